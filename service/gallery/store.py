"""The gallery store: the interface every backend implements and the SQL they share, written
once (``service.gallery.location.open_store`` picks the backend).

A store is the source of truth: subjects and faces (embedding, box, model name and version,
created time, metadata), no images, bound to one ``EmbeddingModel``. Writes are durable when
they return. The change feed lets an in-memory index (this replica's or another's) follow the
store without rereading it:

    head = store.head()                                  # read head() first, then the faces
    index = EmbeddingIndex.from_faces(dim, store.all_faces())
    while True:                                          # e.g. every 200 ms
        changes, head = store.changes_since(head)
        for change in changes:
            if change.op == "remove":
                index.remove([change.face_id])
            elif change.record is not None:
                index.add(change.record)

Replaying a change the faces already reflect is harmless (adding a present face or removing an
absent one does nothing), which is why ``head()`` is read before ``all_faces()``.

``GalleryStore`` implements enrolment and every read over a backend's ``_read`` (one statement,
one snapshot), its table names and parameter style (``Dialect``) and how it stores a box and the
metadata; a backend (SQLite, PostgreSQL) writes: ``_store`` (faces, in one transaction),
``delete_face``, ``delete_subject``. Their SQL differs (upserts, RETURNING, how the change feed
is appended and kept gap-free), so it stays in each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.gallery.records import (
    Change,
    EmbeddingModel,
    FaceRecord,
    GalleryError,
    SubjectInfo,
    checksum,
    decode_cursor,
    encode_cursor,
    new_record,
)

Box = tuple[float, float, float, float]

FACE_COLUMNS = (
    "f.face_id, f.subject, f.embedding, f.box, f.model, f.model_version, f.created_at, f.metadata"
)
MAX_PAGE = 1000


@dataclass(frozen=True)
class Dialect:
    """A backend's table names and parameter placeholder."""

    subjects: str
    faces: str
    changes: str
    param: str  # "?" (sqlite3) or "%s" (psycopg)

    def sql(self, template: str) -> str:
        """`template` with `{subjects}`, `{faces}`, `{changes}` and `{p}` (a parameter) filled."""
        return template.format(
            subjects=self.subjects, faces=self.faces, changes=self.changes, p=self.param
        )


class GalleryStore(ABC):
    """Subjects and faces of one embedding model (`model`); writes durable when they return."""

    model: EmbeddingModel
    dialect: Dialect

    # --- what a backend provides -------------------------------------------------------------

    @abstractmethod
    def _store(self, records: list[FaceRecord]) -> None:
        """Insert the faces (creating their subjects) and their feed entries, in one
        transaction, committed before this returns."""

    @abstractmethod
    def delete_face(self, face_id: str) -> bool:
        """Remove one face (its subject too when it was the last); False when unknown."""

    @abstractmethod
    def delete_subject(self, subject: str) -> int | None:
        """Remove a subject and its faces: how many faces went, None for an unknown subject."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (its own snapshot)."""

    @staticmethod
    @abstractmethod
    def _box(value: Any) -> tuple[float, float, float, float]:
        """A stored box as (x0, y0, x1, y1)."""

    @staticmethod
    @abstractmethod
    def _metadata(value: Any) -> dict[str, Any]:
        """Stored metadata as a dict."""

    # --- enrolment -----------------------------------------------------------------------------

    def add_face(
        self,
        subject: str,
        embedding: np.ndarray,
        box: tuple[float, float, float, float],
        metadata: dict[str, Any] | None = None,
        *,
        model_version: str | None = None,
    ) -> FaceRecord:
        """Enrol one face (the subject is created if new); durable when this returns.
        ``ModelMismatch`` for another model version or embedding size, ``GalleryError`` for a
        bad subject, box or embedding."""
        record = new_record(self.model, subject, embedding, box, metadata, model_version)
        self._store([record])
        return record

    def import_faces(self, faces: Iterable[tuple[str, np.ndarray, Box, dict[str, Any]]]) -> int:
        """Bulk enrolment of (subject, embedding, box, metadata) in ONE transaction (a gallery
        import, the benchmark's prefill): all or nothing, durable when this returns."""
        records = [new_record(self.model, s, e, b, m, None) for s, e, b, m in faces]
        self._store(records)
        return len(records)

    # --- reads -------------------------------------------------------------------------------

    def _select(self, where: str, order: str, params: tuple[Any, ...]) -> list[FaceRecord]:
        rows = self._read(
            self.dialect.sql(f"SELECT {FACE_COLUMNS} FROM {{faces}} f {where} {order}"), params
        )
        return [self._record(row) for row in rows]

    def _record(self, row: tuple[Any, ...]) -> FaceRecord:
        face_id, subject, blob, box, model, version, created, metadata = row
        return FaceRecord(
            face_id,
            subject,
            np.frombuffer(blob, dtype=np.float32).copy(),
            self._box(box),
            model,
            version,
            float(created),
            self._metadata(metadata),
        )

    def list_subjects(
        self, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[SubjectInfo], str | None]:
        """Subjects by name (byte order) after ``cursor``; the next cursor, or None on the
        last page."""
        if not 1 <= limit <= MAX_PAGE:
            raise GalleryError(f"limit must be in 1..{MAX_PAGE}")
        after = decode_cursor(cursor) if cursor else ""
        rows = self._read(
            self.dialect.sql(
                "SELECT s.name, s.created_at, COUNT(f.face_id) FROM {subjects} s "
                "LEFT JOIN {faces} f ON f.subject = s.name WHERE s.name > {p} "
                "GROUP BY s.name ORDER BY s.name LIMIT {p}"
            ),
            (after, limit + 1),
        )
        page = [SubjectInfo(name, int(n), float(t)) for name, t, n in rows[:limit]]
        return page, encode_cursor(page[-1].subject) if len(rows) > limit else None

    def subject_faces(self, subject: str) -> list[FaceRecord]:
        """The subject's faces, oldest first ([] for an unknown subject)."""
        where = self.dialect.sql("WHERE f.subject = {p}")
        return self._select(where, "ORDER BY f.created_at, f.face_id", (subject,))

    def face(self, face_id: str) -> FaceRecord | None:
        found = self._select(self.dialect.sql("WHERE f.face_id = {p}"), "", (face_id,))
        return found[0] if found else None

    def all_faces(self) -> Iterator[FaceRecord]:
        """Every face, by face id."""
        yield from self._select("", "ORDER BY f.face_id", ())

    def counts(self) -> tuple[int, int]:
        """(faces, subjects), from one snapshot."""
        ((faces, subjects),) = self._read(
            self.dialect.sql(
                "SELECT (SELECT COUNT(*) FROM {faces}), (SELECT COUNT(*) FROM {subjects})"
            )
        )
        return int(faces), int(subjects)

    def checksum(self) -> str:
        return checksum((f.face_id, f.embedding) for f in self.all_faces())

    def head(self) -> int:
        """The feed's high-water mark: the seq of the last committed change (0 when none)."""
        ((seq,),) = self._read(self.dialect.sql("SELECT COALESCE(MAX(seq), 0) FROM {changes}"))
        return int(seq)

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[list[Change], int]:
        """Up to ``limit`` committed changes after ``seq`` in commit order, and the new
        high-water mark (the last one's seq; ``seq`` when there is none). One statement, so
        one snapshot; each backend guarantees no change at or below the mark commits later."""
        if limit < 1:
            raise GalleryError("limit must be >= 1")
        rows = self._read(
            self.dialect.sql(
                f"SELECT c.seq, c.op, c.face_id, {FACE_COLUMNS} FROM {{changes}} c "
                "LEFT JOIN {faces} f ON c.op = 'add' AND f.face_id = c.face_id "
                "WHERE c.seq > {p} ORDER BY c.seq LIMIT {p}"
            ),
            (seq, limit),
        )
        changes = [
            Change(int(row[0]), row[1], row[2], None if row[3] is None else self._record(row[3:]))
            for row in rows
        ]
        return changes, changes[-1].seq if changes else seq
