"""The PostgreSQL gallery store against a real PostgreSQL server (tests/pg_harness.py): the
same scenarios as the SQLite store (tests/unit/test_gallery.py), then several processes on one
gallery: each one's writes in the others' feeds within a second, a gap-free feed under
concurrent writers, and acknowledged enrolments surviving SIGKILL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from service.gallery.index import EmbeddingIndex
from service.gallery.location import open_store
from service.gallery.postgres_store import PostgresGallery
from service.gallery.records import Change
from tests import pg_fixture
from tests.pg_harness import PostgresServer
from tests.unit.test_gallery import (
    BOX,
    MODEL,
    acknowledged_survive_sigkill,
    apply,
    ask,
    concurrent_enrolment,
    crud_and_reopen,
    feed_order,
    index_follows_feed,
    model_mismatch,
    pagination,
    replicas_follow_each_other,
    start_agent,
    vec,
    wait_for,
)

postgres_server, postgres_dsn = pg_fixture.postgres_server, pg_fixture.postgres_dsn  # fixtures


def test_crud_and_reopen(postgres_dsn: str) -> None:
    crud_and_reopen(lambda model: PostgresGallery(postgres_dsn, model))


def test_open_store_picks_the_backend_from_the_url(postgres_dsn: str) -> None:
    for url in (postgres_dsn, postgres_dsn.replace("postgresql://", "postgres://")):
        store = open_store(url, MODEL)
        assert isinstance(store, PostgresGallery) and store.counts() == (0, 0)
        store.close()


def test_pagination_visits_every_subject_once(postgres_dsn: str) -> None:
    pagination(PostgresGallery(postgres_dsn, MODEL))


def test_other_model_versions_and_dimensions_are_refused(postgres_dsn: str) -> None:
    model_mismatch(lambda model: PostgresGallery(postgres_dsn, model))


def test_concurrent_enrolment_from_8_threads_loses_nothing(postgres_dsn: str) -> None:
    concurrent_enrolment(PostgresGallery(postgres_dsn, MODEL, pool_size=2))


def test_change_feed_order_and_subject_deletion(postgres_dsn: str) -> None:
    feed_order(PostgresGallery(postgres_dsn, MODEL))


def test_two_processes_starting_at_once_create_one_schema(postgres_dsn: str) -> None:
    with ThreadPoolExecutor(4) as pool:  # four stores racing to create the tables and bind
        stores = list(pool.map(lambda _: PostgresGallery(postgres_dsn, MODEL), range(4)))
    agents = [start_agent(postgres_dsn, seed) for seed in range(2)]
    try:
        ids = [ask(agent, "add racer") for agent in agents]
        assert {f.face_id for f in stores[3].all_faces()} == set(ids)
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
    for store in stores:
        store.close()


def test_two_instances_see_each_others_changes(postgres_dsn: str) -> None:
    replicas_follow_each_other(
        PostgresGallery(postgres_dsn, MODEL), PostgresGallery(postgres_dsn, MODEL)
    )


def test_index_kept_up_by_the_feed_equals_a_rebuild(postgres_dsn: str) -> None:
    index_follows_feed(PostgresGallery(postgres_dsn, MODEL), PostgresGallery(postgres_dsn, MODEL))


def test_another_process_sees_enrolments_and_deletions_within_a_second(
    postgres_dsn: str,
) -> None:
    store = PostgresGallery(postgres_dsn, MODEL)
    agent = start_agent(postgres_dsn, 1)
    try:
        face_id = ask(agent, "add dave")  # the child's write, acknowledged
        seconds, mark = wait_for(store, 0, face_id, "add")
        assert seconds < 1.0 and store.face(face_id) is not None
        assert ask(agent, "delete " + face_id) == "True"
        seconds, mark = wait_for(store, mark, face_id, "remove")
        assert seconds < 1.0 and store.counts() == (0, 0)
        # the other way: the child polls its feed for our next change
        assert agent.stdin is not None and agent.stdout is not None
        agent.stdin.write(f"wait-next add {store.head()}\n")
        agent.stdin.flush()
        mine = store.add_face("erin", vec(7), BOX)
        acknowledged = time.monotonic()
        assert agent.stdout.readline().strip() == mine.face_id
        assert time.monotonic() - acknowledged < 1.0
        agent.stdin.write(f"wait-next remove {store.head()}\n")
        agent.stdin.flush()
        assert store.delete_subject("erin") == 1
        acknowledged = time.monotonic()
        assert agent.stdout.readline().strip() == mine.face_id
        assert time.monotonic() - acknowledged < 1.0
    finally:
        agent.kill()
        agent.wait()


def test_feed_has_no_gaps_under_concurrent_writers_in_two_processes(
    postgres_dsn: str,
) -> None:
    """Two processes enrol and delete at once while a reader polls the feed; the reader sees
    every seq exactly once, in order, and ends with exactly the faces in the table."""
    store = PostgresGallery(postgres_dsn, MODEL)
    agents = [start_agent(postgres_dsn, seed) for seed in (1, 2)]
    index, seen, mark, polls = EmbeddingIndex(MODEL.dim), list[Change](), 0, 0
    try:
        with ThreadPoolExecutor(2) as pool:
            done = [pool.submit(ask, agent, f"churn p{i} 60") for i, agent in enumerate(agents)]
            while True:
                finished = all(f.done() for f in done)  # before the poll: then one more
                changes, mark = store.changes_since(mark, limit=7)
                polls += bool(changes)
                seen += changes
                apply(index, changes)
                if finished and not changes:
                    break
                time.sleep(0.002)
        assert [f.result() for f in done] == ["done", "done"]
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
    adds, removes = 2 * 60, 2 * (15 + 9)  # every 4th face, then subject -0's 9 left
    assert [c.seq for c in seen] == list(range(1, adds + removes + 1)) and mark == store.head()
    assert sum(c.op == "add" for c in seen) == adds and polls > 10  # read while being written
    full, _ = store.changes_since(0, limit=10_000)
    assert [(c.seq, c.op, c.face_id) for c in full] == [(c.seq, c.op, c.face_id) for c in seen]
    live: set[str] = set()
    for change in seen:
        (live.add if change.op == "add" else live.discard)(change.face_id)
    assert live == {f.face_id for f in store.all_faces()} and len(live) == adds - removes
    assert index.checksum() == store.checksum() and len(index) == len(live)


def test_acknowledged_enrolments_survive_sigkill(postgres_dsn: str) -> None:
    acknowledged_survive_sigkill(
        postgres_dsn, lambda model: PostgresGallery(postgres_dsn, model), rounds=10
    )


def test_lost_connections_are_replaced_without_failing_a_request(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    """After the server drops every session (a restart, a failover), the next write and read
    succeed on fresh connections: a write that failed before its COMMIT is run again."""
    store = PostgresGallery(postgres_dsn, MODEL)
    first = store.add_face("fay", vec(8), BOX)

    def drop_sessions() -> None:
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
                "FROM pg_stat_activity WHERE datname = %s",
                (postgres_dsn.rsplit("/", 1)[1],),
            ).fetchone()
        assert row is not None and row[0] >= 1

    drop_sessions()
    second = store.add_face("fay", vec(9), BOX)
    drop_sessions()
    assert store.counts() == (2, 1)
    changes, head = store.changes_since(0)
    assert [(c.seq, c.face_id) for c in changes] == [(1, first.face_id), (2, second.face_id)]
    assert head == 2
    store.close()
