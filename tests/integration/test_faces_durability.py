"""Enrolments survive a kill -9 of the serving processes; two replicas share one PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx

from tests import pg_fixture
from tests.conftest import Server, start_server, stop_server
from tests.faces_fixture import AUTH, KEY, enroll, face_env, identify, identity

postgres_server, postgres_dsn = pg_fixture.postgres_server, pg_fixture.postgres_dsn


def gallery_face_ids(client: httpx.Client) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/faces/subjects", params=params).json()
        for subject in page["subjects"]:
            detail = client.get(f"/faces/subjects/{subject['subject']}").json()
            ids |= {face["face_id"] for face in detail["faces"]}
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_acknowledged_enrolments_survive_kill_9(tmp_path: Path) -> None:
    env = face_env(VISION_API_KEY=KEY)
    server = start_server(tmp_path, env)
    acknowledged: list[str] = []
    stop = threading.Event()

    def enrol_forever(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                try:
                    r = enroll(client, identity(n % 6)[n % 4], f"burst-{worker}-{n}")
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    acknowledged.append(r.json()["face_id"])
                n += 1

    threads = [threading.Thread(target=enrol_forever, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    target = random.Random().randint(8, 20)
    while len(acknowledged) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    server.proc.kill()  # SIGKILL to every process of the server, mid-burst
    stop.set()
    for t in threads:
        t.join()
    server.client.close()
    assert len(acknowledged) >= target

    restarted = start_server(tmp_path, env)
    try:
        stored = gallery_face_ids(restarted.client)
        assert set(acknowledged) <= stored, f"lost {set(acknowledged) - stored}"
        status = restarted.client.get("/faces/gallery").json()
        assert status["faces"] == len(stored)
    finally:
        stop_server(restarted)


def wait_for(predicate: object, timeout: float = 1.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def test_two_replicas_share_one_postgresql(tmp_path: Path, postgres_dsn: str) -> None:
    env = face_env(VISION_GALLERY_URL=postgres_dsn)
    a: Server = start_server(tmp_path / "a", {**env, "VISION_HTTP_WORKERS": "1"})
    try:
        b: Server = start_server(tmp_path / "b", {**env, "VISION_HTTP_WORKERS": "1"})
        try:
            probe = identity(3)[1]
            face_id = enroll(a.client, identity(3)[0], "shared").json()["face_id"]

            def b_finds() -> bool:
                found = identify(b.client, probe).json()["faces"]
                return bool(found) and found[0]["matches"][0]["face_id"] == face_id

            wait_for(b_finds)
            assert b.client.get("/faces/gallery").json()["backend"] == "PostgresGallery"
            assert b.client.delete("/faces/subjects/shared", headers=AUTH).status_code == 204

            def a_forgets() -> bool:
                found = identify(a.client, probe).json()["faces"]
                return not found[0]["matches"]

            wait_for(a_forgets)
            assert a.client.get("/faces/subjects/shared").status_code == 404
            # The follower thread (not only reads) keeps the gauges in step.
            enroll(b.client, identity(4)[0], "gauge")

            def a_counts() -> bool:
                return bool(a.client.get("/faces/gallery").json()["faces"] == 1)

            wait_for(a_counts)
        finally:
            stop_server(b)
    finally:
        stop_server(a)


def test_a_gallery_of_another_embedding_model_is_refused_at_start(tmp_path: Path) -> None:
    import json
    import shutil

    import pytest

    from bench.gallery import prefill
    from bench.serverproc import MODEL_STORE
    from bench.serverproc import start_server as start_server_process

    data = tmp_path / "data"
    data.mkdir()
    prefill(MODEL_STORE / "faces-embedder", 20, data)  # bound to the bundled embedder
    store = tmp_path / "store"
    shutil.copytree(MODEL_STORE / "faces-detector", store / "faces-detector")
    shutil.copytree(MODEL_STORE / "faces-embedder", store / "faces-embedder")
    manifest = store / "faces-embedder" / "model.json"
    package = json.loads(manifest.read_text())
    package["version"] = "2.0.0"  # another release of the embedder
    manifest.write_text(json.dumps(package))
    env = face_env(VISION_MODEL_STORE=str(store), VISION_DATA_DIR=str(data))
    # The workers fail at start with the reason in the log and the service never turns ready.
    with pytest.raises(RuntimeError, match="never mixed"):
        start_server_process(tmp_path / "home", env, ready_timeout=45)
