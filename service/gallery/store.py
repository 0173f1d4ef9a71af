"""The gallery store interface every backend implements, and ``open_store`` to pick one.

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
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from service.gallery.records import Change, EmbeddingModel, FaceRecord, SubjectInfo


@runtime_checkable
class GalleryStore(Protocol):
    model: EmbeddingModel

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
        ...

    def delete_face(self, face_id: str) -> bool:
        """Remove one face (its subject too when it was the last); False when unknown."""
        ...

    def delete_subject(self, subject: str) -> int | None:
        """Remove a subject and its faces: how many faces went, None for an unknown subject."""
        ...

    def list_subjects(
        self, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[SubjectInfo], str | None]:
        """Subjects by name (byte order) after ``cursor``; the next cursor, None on the last
        page. ``GalleryError`` for a limit outside 1..1000 or a bad cursor."""
        ...

    def subject_faces(self, subject: str) -> list[FaceRecord]:
        """The subject's faces, oldest first ([] for an unknown subject)."""
        ...

    def face(self, face_id: str) -> FaceRecord | None: ...

    def all_faces(self) -> Iterator[FaceRecord]:
        """Every face, by face id."""
        ...

    def counts(self) -> tuple[int, int]:
        """(faces, subjects)."""
        ...

    def checksum(self) -> str:
        """``records.checksum`` over every (face id, embedding): compare with the index's."""
        ...

    def head(self) -> int:
        """The change feed's high-water mark: the seq of the last committed change, 0 if none."""
        ...

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[list[Change], int]:
        """Up to ``limit`` committed changes after ``seq``, in commit order (increasing seq),
        and the new high-water mark to pass next time (``seq`` when there are none). A change
        is never reported before the write it records is committed, and never skipped: no
        change with a seq at or below a returned mark commits later. Deleting a subject is one
        ``"remove"`` per face."""
        ...

    def close(self) -> None: ...


def is_postgres_url(url_or_path: str | Path) -> bool:
    return isinstance(url_or_path, str) and url_or_path.startswith(("postgresql://", "postgres://"))


def open_store(url_or_path: str | Path, model: EmbeddingModel) -> GalleryStore:
    """A ``postgresql://`` or ``postgres://`` DSN opens the PostgreSQL store; anything else is
    the path of a SQLite file (created with its directory when missing)."""
    if is_postgres_url(url_or_path):
        from service.gallery.postgres_store import PostgresGallery  # psycopg only when used

        return PostgresGallery(str(url_or_path), model)
    from service.gallery.sqlite_store import SQLiteGallery

    return SQLiteGallery(Path(url_or_path), model)
