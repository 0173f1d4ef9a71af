"""The served gallery (store + index + change feed) and the API-key check, without models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.api.auth import check_api_key
from service.errors import InvalidParameter, Unauthorized
from service.faces.gallery import FaceGallery
from service.faces.service import check_subject, parse_metadata
from service.gallery.index import EmbeddingIndex, build_graph
from service.gallery.records import EmbeddingModel, FaceRecord, ModelMismatch

MODEL = EmbeddingModel("faces-test", "1.0.0+abc", 16)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return v / np.linalg.norm(v)


BOX = (1.0, 2.0, 3.0, 4.0)


def test_two_workers_on_one_file_follow_each_other(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sqlite3")
    a, b = FaceGallery.open(path, MODEL), FaceGallery.open(path, MODEL)
    alice = a.enroll("alice", unit(1), BOX, {"source": "a"})
    bob = b.enroll("bob", unit(2), BOX, {})
    # Each finds the other's enrolment at once (reads pull the change feed first).
    assert b.search(unit(1)[None], 1)[0][0].face_id == alice.face_id
    assert a.search(unit(2)[None], 1)[0][0].subject == "bob"
    assert a.counts() == b.counts() == (2, 2)
    assert b.delete_subject("alice") == 1
    assert [m.subject for m in a.search(unit(1)[None], 5)[0]] == ["bob"]
    assert a.delete_face(bob.face_id) and not b.delete_face(bob.face_id)
    assert a.search(unit(2)[None], 3) == [[]] and b.counts() == (0, 0)
    assert a.check() and b.check()


def test_rebuild_matches_a_fresh_index(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sqlite3")
    gallery = FaceGallery.open(path, MODEL)
    ids = [gallery.enroll(f"s{i % 4}", unit(i), BOX, {}).face_id for i in range(30)]
    for face_id in ids[::3]:
        gallery.delete_face(face_id)
    gallery.close()
    reopened = FaceGallery.open(path, MODEL)
    assert reopened.check()
    assert reopened.counts() == (20, 4)
    fresh = EmbeddingIndex.from_faces(16, reopened.store.all_faces())
    assert reopened.index.checksum() == fresh.checksum()


def test_another_model_version_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sqlite3")
    FaceGallery.open(path, MODEL).enroll("x", unit(0), BOX, {})
    with pytest.raises(ModelMismatch):
        FaceGallery.open(path, EmbeddingModel("faces-test", "2.0.0+def", 16))


def test_index_add_remove_search_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    index, kept = EmbeddingIndex(16), {}
    for step in range(300):
        if kept and rng.random() < 0.35:
            face_id = sorted(kept)[int(rng.integers(len(kept)))]
            assert index.remove([face_id, "unknown"]) == 1
            del kept[face_id]
        else:
            record = FaceRecord(f"f{step}", f"s{step % 9}", unit(step), BOX, "m", "1", 0.0)
            assert index.add(record) and not index.add(record)
            kept[record.face_id] = record
    query = unit(999)
    expected = sorted(kept, key=lambda f: -float(kept[f].embedding @ query))[:5]
    assert [m.face_id for m in index.search(query[None], 5)[0]] == expected
    assert index.checksum() == EmbeddingIndex.from_faces(16, kept.values()).checksum()


def test_hnsw_search_agrees_with_exact_on_clear_neighbours() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((2000, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"f{i}" for i in range(2000)]
    exact = EmbeddingIndex.from_arrays(ids, ids, matrix)
    ann = EmbeddingIndex.from_arrays(ids, ids, matrix, ann_threshold=1000)
    assert ann.wants_ann and not ann.uses_ann and not exact.wants_ann
    snapshot = ann.ann_snapshot()  # writes during the (lock-free) build are replayed after it
    assert ann.remove(["f1"]) == 1 and not ann.wants_ann
    late = FaceRecord("late", "late", matrix[1], BOX, "m", "1", 0.0)
    ann.add(late)
    ann.install_ann(build_graph(snapshot))
    assert ann.uses_ann
    runner_up = next(m.face_id for m in exact.search(matrix[1:2], 3)[0] if m.face_id != "f1")
    assert [m.face_id for m in ann.search(matrix[1:2], 2)[0]] == ["late", runner_up]
    queries = matrix[:50] + 0.01 * rng.standard_normal((50, 16)).astype(np.float32)
    same = [
        a[0].face_id == e[0].face_id and abs(a[0].similarity - e[0].similarity) < 1e-5
        for a, e in zip(ann.search(queries, 1), exact.search(queries, 1), strict=True)
    ]
    # Query 1 always differs (exact still holds f1; the HNSW index replaced it by "late"). The
    # graph is built by several threads, so under CPU load its links, and a miss or two, vary
    # between runs (47 of 50 seen once in CI, 49 in 15 idle runs): HNSW is approximate; its
    # recall at scale is measured by bench/gallery.py.
    assert sum(same) >= 45
    ann.remove(["f0"])
    assert all(m.face_id != "f0" for m in ann.search(matrix[:1], 5)[0])


@pytest.mark.parametrize(
    ("configured", "header", "allowed"),
    [
        ("", None, True),
        ("", "Bearer anything", True),
        ("s3cret", "Bearer s3cret", True),
        ("s3cret", "bearer s3cret", True),
        ("s3cret", None, False),
        ("s3cret", "", False),
        ("s3cret", "Bearer s3cre", False),
        ("s3cret", "Bearer s3cret2", False),
        ("s3cret", "Basic s3cret", False),
        ("s3cret", "s3cret", False),
    ],
)
def test_api_key(configured: str, header: str | None, allowed: bool) -> None:
    if allowed:
        check_api_key(configured, header)
    else:
        with pytest.raises(Unauthorized):
            check_api_key(configured, header)


@pytest.mark.parametrize("subject", ["", "   ", "a" * 201, "tab\there", None])
def test_bad_subjects(subject: str | None) -> None:
    with pytest.raises(InvalidParameter):
        check_subject(subject)


@pytest.mark.parametrize("raw", ["[1, 2]", "{bad json", '"text"', "x" * 20000])
def test_bad_metadata(raw: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_metadata(raw, 16 * 1024)


def test_metadata_round_trip() -> None:
    assert parse_metadata('{"camera": 3, "tags": ["a"]}', 1024) == {"camera": 3, "tags": ["a"]}
    assert parse_metadata(None, 1024) == parse_metadata("  ", 1024) == {}


def test_an_unreachable_store_answers_503() -> None:
    import anyio
    import psycopg

    from service.errors import GalleryUnavailable
    from service.faces.service import _store_call

    def down() -> None:
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(GalleryUnavailable) as caught:
        anyio.run(_store_call, down)
    assert caught.value.status == 503 and caught.value.headers["Retry-After"]
    assert anyio.run(_store_call, lambda: 7) == 7


def test_the_gallery_switches_to_hnsw_off_the_request_path(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sqlite3")
    gallery = FaceGallery(FaceGallery.open(path, MODEL).store, ann_threshold=20)
    ids = [gallery.enroll(f"s{i}", unit(i), BOX, {}).face_id for i in range(25)]
    assert gallery.index.wants_ann and not gallery.index.uses_ann  # still exact
    assert gallery.search(unit(3)[None], 1)[0][0].face_id == ids[3]
    gallery.maintain()
    assert gallery.index.uses_ann
    assert gallery.search(unit(3)[None], 1)[0][0].face_id == ids[3]
    gallery.delete_face(ids[3])
    assert all(m.face_id != ids[3] for m in gallery.search(unit(3)[None], 5)[0])
    assert gallery.check()
