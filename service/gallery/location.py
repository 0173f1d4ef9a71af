"""Where a gallery lives: a PostgreSQL DSN or the path of a SQLite file, opened as its store."""

from __future__ import annotations

from pathlib import Path

from service.gallery.records import EmbeddingModel
from service.gallery.store import GalleryStore


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
