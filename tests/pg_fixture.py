"""pytest fixtures for a real PostgreSQL server (tests/pg_harness.py).

Use them from a test module by binding both names in it (pytest finds fixtures in the
module's namespace; an assignment, unlike an import, keeps ruff's F811 quiet about the test
parameters of the same name)::

    from tests import pg_fixture

    postgres_server, postgres_dsn = pg_fixture.postgres_server, pg_fixture.postgres_dsn

    def test_something(postgres_dsn: str) -> None:
        store = open_store(postgres_dsn, model)  # a fresh, empty database for this test

    def test_more(postgres_server: PostgresServer) -> None:
        dsn = postgres_server.create_database("extra")  # more databases, by hand

``postgres_server`` is one server for the whole session (started on first use); each test
asking for ``postgres_dsn`` gets its own new database, dropped after the test. Where no
PostgreSQL binaries exist the tests are skipped, with the reason in pytest's summary (-rs).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.pg_harness import PostgresServer, PostgresUnavailable, start_postgres

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The DSN of a new empty database for this test (``postgresql://postgres@127.0.0.1:...``)."""
    slug = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())
    name = f"t{next(_numbers)}_{slug}"[:63]
    dsn = postgres_server.create_database(name)
    try:
        yield dsn
    finally:
        postgres_server.drop_database(name)
