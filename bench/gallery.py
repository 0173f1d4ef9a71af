"""Gallery benchmark (`make bench`): search latency and enrolments/s by gallery size.

For each size (default 1k, 10k, 100k, 1M faces of synthetic embeddings: one centre per subject,
five faces per subject scattered around it, L2-normalised, the embedder's dimension):
- identify latency (one query, p50/p99) with the exact numpy index and with the HNSW option
  (usearch), the HNSW graph's build time and its recall@1 against exact search (probes are
  noisy copies of gallery faces, so the exact answer is a real nearest neighbour);
- enrolments/s: durable `add_face` calls into a SQLite store already holding that many faces
  (each one fsync'd), followed by the index pulling the change.

    OPENBLAS_NUM_THREADS=1 python -m bench.gallery [--sizes 1000,10000] [--no-record]

(One BLAS thread, as the server processes run: a threaded BLAS on a 1 x 128 query is slower.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.micro import destination, micro_parser, publish
from service.faces.gallery import FaceGallery
from service.gallery.index import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH, EmbeddingIndex
from service.gallery.records import EmbeddingModel
from service.gallery.sqlite_store import SQLiteGallery

HEADING = "## Face gallery: search and enrolment by gallery size"
FACES_PER_SUBJECT = 5


def synthetic_gallery(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [n, dim] L2-normalised, subject number per face)."""
    subjects = np.arange(n) // FACES_PER_SUBJECT
    centres = rng.standard_normal((subjects[-1] + 1, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    faces = centres[subjects] + rng.standard_normal((n, dim), dtype=np.float32) * (0.6 / dim**0.5)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    return faces, subjects


def probes(faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    picked = faces[rng.integers(0, len(faces), count)]
    noisy = picked + rng.standard_normal(picked.shape, dtype=np.float32) * (
        0.3 / faces.shape[1] ** 0.5
    )
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def latencies_ms(
    index: EmbeddingIndex, queries: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Per-query milliseconds and the (face id, subject) found first."""
    index.search(queries[:1], 1)  # warm-up
    times, top = [], []
    for q in queries:
        t0 = time.perf_counter_ns()
        (matches,) = index.search(q[None], 1)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        top.append((matches[0].face_id, matches[0].subject))
    return np.array(times), top


def recalls(found: list[tuple[str, str]], truth: list[tuple[str, str]]) -> tuple[float, float]:
    """(the exact nearest face found, its subject found) as fractions of the probes."""
    face = np.mean([f[0] == t[0] for f, t in zip(found, truth, strict=True)])
    subject = np.mean([f[1] == t[1] for f, t in zip(found, truth, strict=True)])
    return float(face), float(subject)


def enrolments_per_s(
    faces: np.ndarray, subjects: np.ndarray, count: int, workdir: Path
) -> tuple[float, float]:
    """(enrolments/s, bulk-load seconds) into a SQLite gallery holding `faces` already."""
    model = EmbeddingModel("bench", "1", faces.shape[1])
    path = workdir / f"gallery-{len(faces)}.sqlite3"
    store = SQLiteGallery(path, model)
    t0 = time.perf_counter()
    store.import_faces(
        (f"subject-{s}", e, (0.0, 0.0, 1.0, 1.0), {}) for s, e in zip(subjects, faces, strict=True)
    )
    load_s = time.perf_counter() - t0
    store.close()
    gallery = FaceGallery.open(str(path), model)
    rng = np.random.default_rng(1)
    new = probes(faces, count, rng)
    t0 = time.perf_counter()
    for i, embedding in enumerate(new):
        gallery.enroll(f"new-{i}", embedding, (0.0, 0.0, 1.0, 1.0), {})
    rate = count / (time.perf_counter() - t0)
    gallery.close()
    path.unlink()
    return rate, load_s


def prefill(package_dir: Path, faces: int, data_dir: Path, seed: int = 0) -> Path:
    """A served gallery (`data_dir`/gallery.sqlite3) bound to the embedder package in
    `package_dir`, holding `faces` synthetic faces: what `vision bench` identifies against."""
    from service.faces.follower import gallery_model
    from service.pipeline.package import FaceEmbeddingPost, ModelPackage

    package = ModelPackage.load(package_dir)
    if not isinstance(package.postprocess, FaceEmbeddingPost):
        raise ValueError(f"{package_dir} is not a face embedding package")
    model = gallery_model(
        package.name, package.version, package_dir / package.file, package.postprocess.dim
    )
    embeddings, subjects = synthetic_gallery(faces, model.dim, np.random.default_rng(seed))
    path = data_dir / "gallery.sqlite3"
    store = SQLiteGallery(path, model)
    store.import_faces(
        (f"subject-{s}", e, (0.0, 0.0, 1.0, 1.0), {})
        for s, e in zip(subjects, embeddings, strict=True)
    )
    store.close()
    return path


def row(
    size: int, dim: int, args: argparse.Namespace, workdir: Path
) -> tuple[list[str], list[str]]:
    """The size's table row, and the expansion_search sweep's rows (largest size only)."""
    rng = np.random.default_rng(args.seed)
    faces, subjects = synthetic_gallery(size, dim, rng)
    ids = [f"face-{i}" for i in range(size)]
    names = [f"subject-{s}" for s in subjects]
    queries = probes(faces, args.queries, rng)
    exact = EmbeddingIndex.from_arrays(ids, names, faces)
    exact_ms, truth = latencies_ms(exact, queries)
    print(f"{size:>9} faces: exact p50 {np.percentile(exact_ms, 50):.3f} ms", flush=True)
    ann = EmbeddingIndex.from_arrays(ids, names, faces, ann_threshold=1)
    t0 = time.perf_counter()
    ann.build_ann(progress=size >= 100_000)
    build_s = time.perf_counter() - t0
    ann_ms, found = latencies_ms(ann, queries)
    face_recall, subject_recall = recalls(found, truth)
    print(f"{'':>9}        HNSW built in {build_s:.1f} s, p50 {np.percentile(ann_ms, 50):.3f} "
          f"ms, recall@1 {face_recall:.3f} (subject {subject_recall:.3f})", flush=True)  # fmt: skip
    sweep = []
    if size == max(int(v) for v in args.sizes.split(",")):
        for ef in args.sweep:
            ann._ann.expansion_search = ef
            ms, hits = latencies_ms(ann, queries)
            f, sub = recalls(hits, truth)
            print(f"{'':>9}        expansion_search {ef}: p50 {np.percentile(ms, 50):.3f} ms, "
                  f"recall@1 {f:.3f} (subject {sub:.3f})", flush=True)  # fmt: skip
            sweep.append(
                f"| {size:,} | {ef} | {np.percentile(ms, 50):.3f} | {np.percentile(ms, 99):.3f} "
                f"| {f:.3f} | {sub:.3f} |"
            )
    rate, load_s = enrolments_per_s(faces, subjects, args.enrolments, workdir)
    print(f"{'':>9}        {rate:.0f} enrolments/s (bulk load {load_s:.1f} s)", flush=True)
    cells = [
        f"{size:,}",
        f"{np.percentile(exact_ms, 50):.3f}",
        f"{np.percentile(exact_ms, 99):.3f}",
        f"{np.percentile(ann_ms, 50):.3f}",
        f"{np.percentile(ann_ms, 99):.3f}",
        f"{face_recall:.3f}",
        f"{subject_recall:.3f}",
        f"{build_s:.1f}",
        f"{rate:.0f}",
    ]
    return ["| " + " | ".join(cells) + " |"], sweep


def main(argv: list[str] | None = None) -> int:
    parser = micro_parser("bench.gallery", __doc__)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--enrolments", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(v) for v in text.split(",") if v],
        default="64,128,256,512",
        help="expansion_search values tried at the largest size ('' for none)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="for the SQLite files")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-gallery-") as tmp:
        results = [row(size, args.dim, args, Path(tmp)) for size in sizes]
    table = "\n".join(
        [
            "| faces | exact p50 ms | exact p99 ms | HNSW p50 ms | HNSW p99 ms | HNSW recall@1 "
            "| subject recall@1 | HNSW build s | enrolments/s (SQLite) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(line for rows, _ in results for line in rows),
        ]
    )
    sweep = [line for _, lines in results for line in lines]
    if sweep:
        table += (
            "\n\nHNSW expansion_search at the largest size (the trade-off behind the default):\n\n"
        )
        table += "\n".join(
            [
                "| faces | expansion_search | p50 ms | p99 ms | recall@1 | subject recall@1 |",
                "|---:|---:|---:|---:|---:|---:|",
                *sweep,
            ]
        )
    details = [
        f"{args.dim}-dim synthetic embeddings, {FACES_PER_SUBJECT} faces per subject; "
        f"{args.queries} single-face queries; {args.enrolments} durable enrolments per size",
        f"HNSW: usearch, connectivity {CONNECTIVITY}, expansion_add {EXPANSION_ADD}, "
        f"expansion_search {EXPANSION_SEARCH}, 16 candidates re-scored exactly; recall@1: the "
        "exact nearest face found first; subject recall@1: its subject found first",
        "OPENBLAS_NUM_THREADS=1 as in the server processes",
    ]
    publish("bench.gallery", argv, details, table, heading=HEADING,
            output=destination(args), load_start=load_start)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
