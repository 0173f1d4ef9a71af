"""The face gallery: a durable store (the source of truth) and an in-memory search index."""
