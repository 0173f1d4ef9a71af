"""The shared gallery store: PostgreSQL (psycopg 3), for several replicas on one gallery.

Same API and semantics as ``SQLiteGallery`` (``service.gallery.store.GalleryStore``): subjects
and faces, no images; the embedding is float32 ``bytea``; the gallery is bound to one
embedding model in ``gallery_meta`` and another model's embeddings raise ``ModelMismatch``.
Tables are prefixed ``gallery_`` so the database may be shared with other applications.

Durability: every write is one transaction and a method returns only after its ``COMMIT``
has returned; with ``synchronous_commit`` on (PostgreSQL's default, forced back on for this
store's sessions where a server turns it off) the commit is in the WAL on disk by then.

Change feed without gaps: with a plain sequence, numbers are handed out at insert time while
transactions commit in another order, and a reader that has seen seq 7 skips seq 6 committing
a moment later. Here every write transaction first takes one transaction-level advisory lock
(``pg_advisory_xact_lock``, per database), so writers of all threads and processes run one at
a time, and under it the next seq is ``MAX(seq) + 1`` (contiguous: a rolled-back write takes
no number). PostgreSQL makes a commit visible before it releases the transaction's locks, so
a reader never sees seq n + 1 without seq n. Writes (enrolments) are rare: serialising them
costs nothing that matters. The same lock guards schema creation and the model binding.

Connections: a small lock-protected pool of autocommit connections, one per operation in
flight; a read is one statement (one snapshot). After a connection error (a server restart)
the pool is emptied and the operation retried once on a fresh connection: a read always, a
write only when the error came before its ``COMMIT`` was sent (so it cannot have committed);
an error during the ``COMMIT`` raises, and the write is not acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from service.gallery.records import EmbeddingModel, FaceRecord, GalleryError
from service.gallery.store import Dialect, GalleryStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gallery_subjects
    (name TEXT COLLATE "C" PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS gallery_faces (
    face_id TEXT PRIMARY KEY,
    subject TEXT COLLATE "C" NOT NULL REFERENCES gallery_subjects(name) ON DELETE CASCADE,
    embedding BYTEA NOT NULL,  -- float32, L2-normalised
    box DOUBLE PRECISION[] NOT NULL,
    model TEXT NOT NULL, model_version TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,  -- Unix seconds
    metadata JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS gallery_faces_subject ON gallery_faces(subject);
CREATE TABLE IF NOT EXISTS gallery_changes (seq BIGINT PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')), face_id TEXT NOT NULL)
"""
WRITE_LOCK = 0x76697369_6F6E6761  # "visionga": the advisory lock every write transaction takes
APPEND_CHANGES = (
    "INSERT INTO gallery_changes (seq, op, face_id) "
    "SELECT (SELECT COALESCE(MAX(seq), 0) FROM gallery_changes) + t.n, %s, t.face_id "
    "FROM unnest(%s::text[]) WITH ORDINALITY AS t(face_id, n)"
)
T = TypeVar("T")


class PostgresGallery(GalleryStore):
    dialect = Dialect("gallery_subjects", "gallery_faces", "gallery_changes", "%s")

    def __init__(
        self, dsn: str, model: EmbeddingModel, *, pool_size: int = 4, connect_timeout: int = 10
    ) -> None:
        self.dsn = dsn
        self.model = model
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        params = conninfo_to_dict(dsn)
        self._where = f"database {params.get('dbname', '?')} on {params.get('host', 'localhost')}"
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._closed = False
        self._write(self._create_schema)

    # --- connections and transactions --------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout)
        row = db.execute("SHOW synchronous_commit").fetchone()
        if row is not None and row[0] == "off":  # acknowledged must mean on disk
            db.execute("SET synchronous_commit = on")
        return db

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._closed:
                raise GalleryError("the gallery is closed")
            db = self._idle.pop() if self._idle else None
        db = db or self._connect()
        try:
            yield db
        except psycopg.OperationalError:
            db.close()
            self._drain()  # a server restart breaks every pooled connection at once
            raise
        finally:
            pooled = False
            if not db.closed and db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                with self._lock:
                    if not self._closed and len(self._idle) < self.pool_size:
                        self._idle.append(db)
                        pooled = True
            if not pooled:
                db.close()

    def _drain(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()

    def _write(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` in one transaction holding the writers' lock, committed before this
        returns; run again once on a fresh connection when the first one failed before its
        ``COMMIT`` was sent."""
        for attempt in (1, 2):
            committing = False
            try:
                with self._connection() as db:
                    with db.transaction():
                        db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                        result = work(db)
                        committing = True
                    return result
            except psycopg.OperationalError:
                if committing or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            try:
                with self._connection() as db:
                    return db.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _create_schema(self, db: psycopg.Connection[Any]) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        self._bind_model(db)

    def _bind_model(self, db: psycopg.Connection[Any]) -> None:
        stored = dict(db.execute("SELECT key, value FROM gallery_meta").fetchall())
        if not stored:
            with db.cursor() as cur:
                rows = list(self.model.meta().items())
                cur.executemany("INSERT INTO gallery_meta VALUES (%s, %s)", rows)
            return
        self.model.check_binding(stored, f"the gallery ({self._where})")

    # --- writes ------------------------------------------------------------------------------

    def _store(self, records: list[FaceRecord]) -> None:
        def add(db: psycopg.Connection[Any]) -> None:
            for r in records:
                db.execute(
                    "INSERT INTO gallery_subjects VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (r.subject, r.created_at),
                )
                db.execute(
                    "INSERT INTO gallery_faces VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (r.face_id, r.subject, r.embedding.tobytes(), list(r.box), r.model,
                     r.model_version, r.created_at, Jsonb(r.metadata)),
                )  # fmt: skip
            db.execute(APPEND_CHANGES, ("add", [r.face_id for r in records]))

        self._write(add)

    def delete_face(self, face_id: str) -> bool:
        """Remove one face (and its subject when it was the last); durable when this returns."""

        def delete(db: psycopg.Connection[Any]) -> bool:
            row = db.execute(
                "DELETE FROM gallery_faces WHERE face_id = %s RETURNING subject", (face_id,)
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "DELETE FROM gallery_subjects s WHERE s.name = %s AND NOT EXISTS "
                "(SELECT 1 FROM gallery_faces f WHERE f.subject = s.name)",
                (row[0],),
            )
            db.execute(APPEND_CHANGES, ("remove", [face_id]))
            return True

        return self._write(delete)

    def delete_subject(self, subject: str) -> int | None:
        """Remove a subject and its faces; how many faces went, None for an unknown subject."""

        def delete(db: psycopg.Connection[Any]) -> int | None:
            rows = db.execute(
                "DELETE FROM gallery_faces WHERE subject = %s RETURNING face_id", (subject,)
            ).fetchall()
            gone = db.execute("DELETE FROM gallery_subjects WHERE name = %s", (subject,)).rowcount
            ids = sorted(face_id for (face_id,) in rows)
            if ids:
                db.execute(APPEND_CHANGES, ("remove", ids))
            return len(ids) if gone else None

        return self._write(delete)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._drain()

    @staticmethod
    def _box(value: Any) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = (float(v) for v in value)
        return x0, y0, x1, y1

    @staticmethod
    def _metadata(value: Any) -> dict[str, Any]:
        return dict(value)
