"""The SQLite gallery store and the in-memory index: CRUD, pagination, model binding, threads,
and durability under SIGKILL (issue 5 groundwork; the HTTP endpoints come later)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.gallery.index import EmbeddingIndex
from service.gallery.records import EmbeddingModel, GalleryError, ModelMismatch
from service.gallery.sqlite_store import SQLiteGallery

MODEL = EmbeddingModel("face-embedder", "1.0.0", 8)
BOX = (1.0, 2.0, 30.0, 40.0)


def vec(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=MODEL.dim).astype(np.float32)


def test_crud_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    g = SQLiteGallery(path, MODEL)
    a1 = g.add_face("alice", vec(1), BOX, {"source": "badge"})
    a2 = g.add_face("alice", vec(2), BOX)
    b1 = g.add_face("bob", vec(3), BOX)
    assert np.linalg.norm(a1.embedding) == pytest.approx(1.0)
    assert g.counts() == (3, 2)
    assert [f.face_id for f in g.subject_faces("alice")] == [a1.face_id, a2.face_id]
    assert g.face(a1.face_id).metadata == {"source": "badge"}  # type: ignore[union-attr]
    assert g.delete_face(a2.face_id) and not g.delete_face(a2.face_id)
    assert g.delete_subject("bob") == 1 and g.delete_subject("bob") is None
    assert g.face(b1.face_id) is None
    g.close()
    again = SQLiteGallery(path, MODEL)
    assert again.counts() == (1, 1)
    (face,) = again.all_faces()
    assert face.face_id == a1.face_id and np.array_equal(face.embedding, a1.embedding)
    assert face.box == BOX and face.model_version == "1.0.0"
    assert again.delete_face(a1.face_id) and again.counts() == (0, 0)  # last face: subject goes


def test_pagination_visits_every_subject_once(tmp_path: Path) -> None:
    g = SQLiteGallery(tmp_path / "g.db", MODEL)
    names = [f"person-{i:03d}" for i in range(23)]
    for i, name in enumerate(reversed(names)):
        g.add_face(name, vec(i), BOX)
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = g.list_subjects(limit=5, cursor=cursor)
        seen += [s.subject for s in page]
        pages += 1
        assert all(s.faces == 1 for s in page)
        if cursor is None:
            break
    assert seen == names and pages == 5
    with pytest.raises(GalleryError):
        g.list_subjects(limit=0)
    with pytest.raises(GalleryError):
        g.list_subjects(cursor="%%%")


def test_other_model_versions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    g = SQLiteGallery(path, MODEL)
    g.add_face("alice", vec(1), BOX)
    with pytest.raises(ModelMismatch):
        g.add_face("alice", vec(2), BOX, model_version="2.0.0")
    with pytest.raises(ModelMismatch):
        g.add_face("alice", np.ones(MODEL.dim + 1, np.float32), BOX)
    with pytest.raises(GalleryError):
        g.add_face("alice", np.zeros(MODEL.dim, np.float32), BOX)
    with pytest.raises(GalleryError):
        g.add_face(" padded ", vec(3), BOX)
    g.close()
    with pytest.raises(ModelMismatch, match=r"1\.0\.0"):
        SQLiteGallery(path, EmbeddingModel("face-embedder", "2.0.0", MODEL.dim))
    assert SQLiteGallery(path, MODEL).counts() == (1, 1)  # nothing was mixed in


def test_concurrent_enrolment_from_8_threads_loses_nothing(tmp_path: Path) -> None:
    g = SQLiteGallery(tmp_path / "g.db", MODEL)

    def enrol(worker: int) -> list[str]:
        return [g.add_face(f"w{worker}", vec(worker * 100 + i), BOX).face_id for i in range(25)]

    with ThreadPoolExecutor(8) as pool:
        ids = [f for batch in pool.map(enrol, range(8)) for f in batch]
    assert len(set(ids)) == 200 and g.counts() == (200, 8)
    assert {f.face_id for f in g.all_faces()} == set(ids)


def test_index_search_and_checksum_match_the_store(tmp_path: Path) -> None:
    g = SQLiteGallery(tmp_path / "g.db", MODEL)
    faces = [g.add_face(f"s{i % 4}", vec(i), BOX) for i in range(12)]
    index = EmbeddingIndex.from_faces(MODEL.dim, g.all_faces())
    assert len(index) == 12 and index.checksum() == g.checksum()
    queries = np.stack([faces[3].embedding, faces[7].embedding])
    top = index.search(queries, k=3)
    assert [m[0].face_id for m in top] == [faces[3].face_id, faces[7].face_id]
    assert top[0][0].similarity == pytest.approx(1.0, abs=1e-5)
    sims = [m.similarity for m in top[0]]
    assert sims == sorted(sims, reverse=True)
    brute = faces[3].embedding @ np.stack([f.embedding for f in faces]).T
    assert [m.face_id for m in top[0]] == [faces[i].face_id for i in np.argsort(-brute)[:3]]
    g.delete_face(faces[3].face_id)
    index.remove([faces[3].face_id])
    assert index.checksum() == g.checksum()
    assert index.search(faces[3].embedding, k=1)[0][0].face_id != faces[3].face_id
    late = g.add_face("late", vec(99), BOX)
    index.add(late)
    assert index.checksum() == g.checksum() and len(index) == 12
    assert EmbeddingIndex(MODEL.dim).search(vec(0)[None], k=2) == [[]]


CHILD = """
import sys
import numpy as np
from service.gallery.records import EmbeddingModel
from service.gallery.sqlite_store import SQLiteGallery
g = SQLiteGallery(sys.argv[1], EmbeddingModel("face-embedder", "1.0.0", 8))
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
while True:
    face = g.add_face("crash", rng.normal(size=8), (0, 0, 1, 1))
    print(face.face_id, flush=True)  # acknowledged: the commit has returned
"""


def test_acknowledged_enrolments_survive_sigkill(tmp_path: Path) -> None:
    """A child enrols in a loop and prints each face id once add_face has returned; it is
    killed with SIGKILL at a random moment, 20 times; every printed id is in the store."""
    path = tmp_path / "crash.db"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    acknowledged: set[str] = set()
    rng = random.Random(0)
    for round_ in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        acknowledged |= {line.strip() for line in out.splitlines() if len(line.strip()) == 32}
    assert len(acknowledged) > 20
    stored = {f.face_id for f in SQLiteGallery(path, MODEL).all_faces()}
    missing = acknowledged - stored
    assert not missing, json.dumps(sorted(missing)[:5])
