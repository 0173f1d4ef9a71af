"""The embedded gallery store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction; a method returns only after
the commit, and with WAL + FULL the commit is on disk (fsync'd) when it returns, so anything
acknowledged survives a kill -9 or a power cut. Subjects and faces; no images. The gallery is
bound to one embedding model (name, version, dimension), recorded in the file on first use:
opening it with another model, or adding another model's embeddings, raises ``ModelMismatch``.
Safe for several threads (one connection behind a lock) and several processes (SQLite's file
locks, ``busy_timeout``).

Change feed: every write also appends its changes to ``changes`` (``seq INTEGER PRIMARY KEY
AUTOINCREMENT``) in the same transaction, so a change is in the feed exactly when the write it
records is committed. SQLite has one writer at a time (``BEGIN IMMEDIATE`` takes the write lock
before the seq is allocated), so seqs commit in increasing order and a reader that has seen seq
``n`` can never later see a change below ``n``: ``changes_since`` never skips one. A file
written before the feed existed starts with an empty feed (its faces come from ``all_faces``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from service.gallery.records import (
    MAX_SUBJECT_LENGTH,
    EmbeddingModel,
    FaceRecord,
    decode_cursor,
    encode_cursor,
)
from service.gallery.store import Dialect, GalleryStore

__all__ = ["MAX_SUBJECT_LENGTH", "SQLiteGallery", "decode_cursor", "encode_cursor"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    face_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL REFERENCES subjects(name) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    box TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_subject ON faces(subject);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    face_id TEXT NOT NULL
);
"""


class SQLiteGallery(GalleryStore):
    dialect = Dialect("subjects", "faces", "changes", "?")

    def __init__(self, path: Path, model: EmbeddingModel, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.model = model
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1e3
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            self._bind_model(db)

    # --- transactions ------------------------------------------------------------------------

    class _Transaction:
        def __init__(self, gallery: SQLiteGallery) -> None:
            self.gallery = gallery

        def __enter__(self) -> sqlite3.Connection:
            self.gallery._lock.acquire()
            self.gallery._db.execute("BEGIN IMMEDIATE")
            return self.gallery._db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            try:
                self.gallery._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.gallery._lock.release()

    def _write(self) -> SQLiteGallery._Transaction:
        return SQLiteGallery._Transaction(self)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _bind_model(self, db: sqlite3.Connection) -> None:
        stored = dict(db.execute("SELECT key, value FROM gallery_meta").fetchall())
        if not stored:
            db.executemany(
                "INSERT INTO gallery_meta VALUES (?, ?)", list(self.model.meta().items())
            )
            return
        self.model.check_binding(stored, str(self.path))

    # --- writes ------------------------------------------------------------------------------

    def _store(self, records: list[FaceRecord]) -> None:
        with self._write() as db:
            for record in records:
                self._insert(db, record)

    @staticmethod
    def _insert(db: sqlite3.Connection, record: FaceRecord) -> None:
        db.execute(
            "INSERT OR IGNORE INTO subjects VALUES (?, ?)", (record.subject, record.created_at)
        )
        db.execute(
            "INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.face_id,
                record.subject,
                record.embedding.tobytes(),
                json.dumps(record.box),
                record.model,
                record.model_version,
                record.created_at,
                json.dumps(record.metadata),
            ),
        )
        db.execute("INSERT INTO changes (op, face_id) VALUES ('add', ?)", (record.face_id,))

    def delete_face(self, face_id: str) -> bool:
        """Remove one face (and its subject when it was the last); durable when this returns."""
        with self._write() as db:
            row = db.execute("SELECT subject FROM faces WHERE face_id = ?", (face_id,)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM faces WHERE face_id = ?", (face_id,))
            db.execute(
                "DELETE FROM subjects WHERE name = ? AND NOT EXISTS "
                "(SELECT 1 FROM faces WHERE subject = ?)",
                (row[0], row[0]),
            )
            db.execute("INSERT INTO changes (op, face_id) VALUES ('remove', ?)", (face_id,))
        return True

    def delete_subject(self, subject: str) -> int | None:
        """Remove a subject and its faces; how many faces went, None for an unknown subject."""
        with self._write() as db:
            ids = db.execute(
                "SELECT face_id FROM faces WHERE subject = ? ORDER BY face_id", (subject,)
            ).fetchall()
            gone = db.execute("DELETE FROM subjects WHERE name = ?", (subject,)).rowcount
            db.executemany("INSERT INTO changes (op, face_id) VALUES ('remove', ?)", ids)
        return len(ids) if gone else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _box(value: Any) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = json.loads(value)
        return x0, y0, x1, y1

    @staticmethod
    def _metadata(value: Any) -> dict[str, Any]:
        metadata: dict[str, Any] = json.loads(value)
        return metadata
