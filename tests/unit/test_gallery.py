"""The SQLite gallery store and the in-memory index: CRUD, pagination, model binding, threads,
the change feed, and durability under SIGKILL (issue 5 groundwork; the HTTP endpoints come
later). The scenarios take a store (or a way to open one), so test_gallery_postgres.py runs the
same ones against PostgreSQL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.gallery.index import EmbeddingIndex
from service.gallery.location import open_store
from service.gallery.records import Change, EmbeddingModel, GalleryError, ModelMismatch
from service.gallery.sqlite_store import SQLiteGallery
from service.gallery.store import GalleryStore

MODEL = EmbeddingModel("face-embedder", "1.0.0", 8)
BOX = (1.0, 2.0, 30.0, 40.0)
ROOT = Path(__file__).resolve().parents[2]
Opener = Callable[[EmbeddingModel], GalleryStore]  # opens the same gallery on every call


def vec(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=MODEL.dim).astype(np.float32)


def apply(index: EmbeddingIndex, changes: Iterable[Change]) -> None:
    """What a replica does with the feed."""
    for change in changes:
        if change.op == "remove":
            index.remove([change.face_id])
        elif change.record is not None:
            index.add(change.record)


def wait_for(store: GalleryStore, seq: int, face_id: str, op: str) -> tuple[float, int]:
    """Poll ``store``'s feed after ``seq`` until (op, face_id) shows: (seconds, new mark)."""
    start = time.monotonic()
    while time.monotonic() - start < 5:
        changes, seq = store.changes_since(seq)
        if any(c.face_id == face_id and c.op == op for c in changes):
            return time.monotonic() - start, seq
        time.sleep(0.005)
    raise AssertionError(f"{op} {face_id} not in the feed after 5 s")


# --- scenarios, shared with test_gallery_postgres.py -------------------------------------------


def crud_and_reopen(open_gallery: Opener) -> None:
    g = open_gallery(MODEL)
    assert isinstance(g, GalleryStore)
    a1 = g.add_face("alice", vec(1), BOX, {"source": "badge"})
    a2 = g.add_face("alice", vec(2), BOX)
    b1 = g.add_face("bob", vec(3), BOX)
    assert np.linalg.norm(a1.embedding) == pytest.approx(1.0)
    assert g.counts() == (3, 2)
    assert [f.face_id for f in g.subject_faces("alice")] == [a1.face_id, a2.face_id]
    assert g.face(a1.face_id).metadata == {"source": "badge"}  # type: ignore[union-attr]
    assert g.delete_face(a2.face_id) and not g.delete_face(a2.face_id)
    assert g.delete_subject("bob") == 1 and g.delete_subject("bob") is None
    assert g.face(b1.face_id) is None and g.subject_faces("bob") == []
    g.close()
    again = open_gallery(MODEL)
    assert again.counts() == (1, 1)
    (face,) = again.all_faces()
    assert face.face_id == a1.face_id and np.array_equal(face.embedding, a1.embedding)
    assert face.box == BOX and face.model_version == "1.0.0" and face.model == MODEL.name
    assert face.created_at == a1.created_at and face.metadata == a1.metadata  # stored exactly
    assert again.delete_face(a1.face_id) and again.counts() == (0, 0)  # last face: subject goes
    again.close()


def pagination(g: GalleryStore) -> None:
    names = [f"person-{i:03d}" for i in range(23)] + ["Zed", "ärger"]  # byte order
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
    assert seen == sorted(names, key=str.encode) and pages == 5
    with pytest.raises(GalleryError):
        g.list_subjects(limit=0)
    with pytest.raises(GalleryError):
        g.list_subjects(cursor="%%%")


def model_mismatch(open_gallery: Opener) -> None:
    g = open_gallery(MODEL)
    g.add_face("alice", vec(1), BOX)
    with pytest.raises(ModelMismatch):
        g.add_face("alice", vec(2), BOX, model_version="2.0.0")
    with pytest.raises(ModelMismatch):
        g.add_face("alice", np.ones(MODEL.dim + 1, np.float32), BOX)
    with pytest.raises(GalleryError):
        g.add_face("alice", np.zeros(MODEL.dim, np.float32), BOX)
    with pytest.raises(GalleryError):
        g.add_face(" padded ", vec(3), BOX)
    with pytest.raises(GalleryError):
        g.add_face("alice", vec(3), (1.0, 2.0, 3.0))  # type: ignore[arg-type]
    g.close()
    with pytest.raises(ModelMismatch, match=r"1\.0\.0"):
        open_gallery(EmbeddingModel("face-embedder", "2.0.0", MODEL.dim))
    with pytest.raises(ModelMismatch, match="dim 8"):
        open_gallery(EmbeddingModel("face-embedder", "1.0.0", MODEL.dim * 2))
    again = open_gallery(MODEL)
    assert again.counts() == (1, 1) and again.head() == 1  # nothing was mixed in
    again.close()


def concurrent_enrolment(g: GalleryStore) -> None:
    def enrol(worker: int) -> list[str]:
        return [g.add_face(f"w{worker}", vec(worker * 100 + i), BOX).face_id for i in range(25)]

    with ThreadPoolExecutor(8) as pool:
        ids = [f for batch in pool.map(enrol, range(8)) for f in batch]
    assert len(set(ids)) == 200 and g.counts() == (200, 8)
    assert {f.face_id for f in g.all_faces()} == set(ids)
    changes, head = g.changes_since(0, limit=1000)
    assert [c.seq for c in changes] == list(range(1, 201)) and head == g.head() == 200
    assert {c.face_id for c in changes} == set(ids)


def feed_order(g: GalleryStore) -> None:
    assert g.head() == 0 and g.changes_since(0) == ([], 0)
    a1 = g.add_face("alice", vec(1), BOX, {"k": [1, 2]})
    a2 = g.add_face("alice", vec(2), BOX)
    b1 = g.add_face("bob", vec(3), BOX)
    a3 = g.add_face("alice", vec(4), BOX)
    assert g.delete_face(a2.face_id)
    assert g.delete_subject("alice") == 2
    expected = [("add", a1), ("add", a2), ("add", b1), ("add", a3), ("remove", a2)]
    expected += [("remove", f) for f in sorted([a1, a3], key=lambda f: f.face_id)]
    changes, head = g.changes_since(0)
    assert [(c.seq, c.op, c.face_id) for c in changes] == [
        (i, op, f.face_id) for i, (op, f) in enumerate(expected, start=1)
    ]
    assert head == g.head() == 7
    # the add of a face still there carries its record; of one removed since, None
    assert [c.record is not None for c in changes] == [False, False, True] + [False] * 4
    record = changes[2].record
    assert record is not None and record.subject == "bob" and record.box == BOX
    assert np.array_equal(record.embedding, b1.embedding) and record.metadata == {}
    assert changes[0].record is None and changes[4].record is None
    first, mark = g.changes_since(0, limit=3)
    rest, mark = g.changes_since(mark, limit=3)
    last, mark = g.changes_since(mark, limit=3)
    assert [c.seq for c in first + rest + last] == [c.seq for c in changes] and mark == 7
    assert g.changes_since(7) == ([], 7)
    with pytest.raises(GalleryError):
        g.changes_since(0, limit=0)


def replicas_follow_each_other(a: GalleryStore, b: GalleryStore) -> None:
    """One instance's enrolments and deletions are in the other's feed within a second."""
    mark_a, mark_b = a.head(), b.head()
    face = a.add_face("carol", vec(5), BOX)
    seconds, mark_b = wait_for(b, mark_b, face.face_id, "add")
    assert seconds < 1.0
    other = b.add_face("carol", vec(6), BOX)
    seconds, mark_a = wait_for(a, mark_a, other.face_id, "add")
    assert seconds < 1.0 and a.face(other.face_id) is not None
    assert b.delete_face(face.face_id)
    seconds, mark_a = wait_for(a, mark_a, face.face_id, "remove")
    assert seconds < 1.0 and a.face(face.face_id) is None
    assert a.delete_subject("carol") == 1
    seconds, mark_b = wait_for(b, mark_b, other.face_id, "remove")
    assert seconds < 1.0 and b.counts() == (0, 0)


def index_follows_feed(a: GalleryStore, b: GalleryStore) -> None:
    """An index built from ``head()`` + ``all_faces()`` and kept up by ``changes_since`` ends
    equal to a fresh rebuild, even when writes land between reading the head and the faces."""
    early = [a.add_face(f"s{i % 3}", vec(i), BOX) for i in range(9)]
    mark = b.head()
    a.delete_face(early[0].face_id)  # between head() and all_faces(): replayed harmlessly
    racing = a.add_face("s9", vec(50), BOX)
    index = EmbeddingIndex.from_faces(MODEL.dim, b.all_faces())
    a.delete_subject("s1")
    later = [a.add_face("s4", vec(60 + i), BOX) for i in range(4)]
    a.delete_face(later[1].face_id)
    a.delete_face(racing.face_id)
    assert index.checksum() != a.checksum()
    while True:
        changes, mark = b.changes_since(mark, limit=4)
        if not changes:
            break
        apply(index, changes)
    fresh = EmbeddingIndex.from_faces(MODEL.dim, a.all_faces())
    assert len(index) == len(fresh) == a.counts()[0] == 9 - 1 - 3 + 3
    assert index.checksum() == fresh.checksum() == a.checksum() == b.checksum()


AGENT = """
import sys, time
import numpy as np
from service.gallery.records import EmbeddingModel
from service.gallery.location import open_store
store = open_store(sys.argv[1], EmbeddingModel("face-embedder", "1.0.0", 8))
rng = np.random.default_rng(int(sys.argv[2]))
def add(subject):
    return store.add_face(subject, rng.normal(size=8), (0, 0, 1, 1)).face_id
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "enrol-forever":  # each id printed once add_face has returned: acknowledged
        while True:
            print(add("crash"), flush=True)
    elif command == "add":
        print(add(args[0]), flush=True)
    elif command == "delete":
        print(store.delete_face(args[0]), flush=True)
    elif command == "wait-next":  # op, seq: the id of the first such change after seq
        start, seq, seen = time.monotonic(), int(args[1]), []
        while not seen and time.monotonic() - start < 5:
            changes, seq = store.changes_since(seq)
            seen = [c.face_id for c in changes if c.op == args[0]]
            time.sleep(0.005)
        print(seen[0] if seen else "timeout", flush=True)
    elif command == "churn":  # prefix, n: enrol n, delete every 4th, then one subject
        for i in range(int(args[1])):
            face_id = add(f"{args[0]}-{i % 5}")
            if i % 4 == 3:
                store.delete_face(face_id)
        store.delete_subject(f"{args[0]}-0")
        print("done", flush=True)
"""


def start_agent(target: str, seed: int) -> subprocess.Popen[str]:
    """A child process holding its own store on ``target``, driven by lines on its stdin."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, target, str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
    return agent


def ask(agent: subprocess.Popen[str], line: str) -> str:
    assert agent.stdin is not None and agent.stdout is not None
    agent.stdin.write(line + "\n")
    agent.stdin.flush()
    return agent.stdout.readline().strip()


def acknowledged_survive_sigkill(target: str, open_gallery: Opener, rounds: int) -> None:
    """A child enrols in a loop and prints each face id once add_face has returned; it is
    killed with SIGKILL at a random moment, ``rounds`` times; every printed id is stored."""
    acknowledged: set[str] = set()
    rng = random.Random(0)
    for round_ in range(rounds):
        child = start_agent(target, round_)
        assert child.stdin is not None
        child.stdin.write("enrol-forever\n")
        child.stdin.flush()
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        acknowledged |= {line.strip() for line in out.splitlines() if len(line.strip()) == 32}
    assert len(acknowledged) > rounds
    g = open_gallery(MODEL)
    stored = {f.face_id for f in g.all_faces()}
    missing = acknowledged - stored
    assert not missing, json.dumps(sorted(missing)[:5])
    changes, head = g.changes_since(0, limit=100_000)  # the feed agrees with the table
    assert [c.seq for c in changes] == list(range(1, head + 1))
    assert {c.face_id for c in changes if c.op == "add"} == stored
    g.close()


# --- SQLite ------------------------------------------------------------------------------------


def test_crud_and_reopen(tmp_path: Path) -> None:
    crud_and_reopen(lambda model: SQLiteGallery(tmp_path / "gallery.db", model))


def test_pagination_visits_every_subject_once(tmp_path: Path) -> None:
    pagination(SQLiteGallery(tmp_path / "g.db", MODEL))


def test_other_model_versions_are_refused(tmp_path: Path) -> None:
    model_mismatch(lambda model: SQLiteGallery(tmp_path / "g.db", model))


def test_concurrent_enrolment_from_8_threads_loses_nothing(tmp_path: Path) -> None:
    concurrent_enrolment(SQLiteGallery(tmp_path / "g.db", MODEL))


def test_change_feed_order_and_subject_deletion(tmp_path: Path) -> None:
    feed_order(open_store(tmp_path / "g.db", MODEL))


def test_two_instances_on_one_file_see_each_others_changes(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    replicas_follow_each_other(SQLiteGallery(path, MODEL), SQLiteGallery(path, MODEL))


def test_index_kept_up_by_the_feed_equals_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    index_follows_feed(SQLiteGallery(path, MODEL), SQLiteGallery(path, MODEL))


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


def test_acknowledged_enrolments_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    acknowledged_survive_sigkill(str(path), lambda model: SQLiteGallery(path, model), rounds=20)
