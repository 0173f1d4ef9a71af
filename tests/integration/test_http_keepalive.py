"""Idle keep-alive connections outlive the idle timeout of the proxies in front.

uvicorn's default closes an idle connection after 5 s. A load balancer (or a client waiting out
a Retry-After) that reuses it later races the close and gets a connection reset: a Locust run
saw one. `VISION_HTTP_KEEP_ALIVE_S` (75 s by default) is passed to `bentoml serve`."""

from __future__ import annotations

import http.client
import time
import urllib.parse

from tests.conftest import Server

IDLE_S = 6.5  # past uvicorn's 5 s default


def test_an_idle_connection_is_still_open_after_six_seconds(server: Server) -> None:
    url = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        connection.request("GET", "/livez")
        first = connection.getresponse()
        first.read()
        assert first.status == 200
        local_port = connection.sock.getsockname()[1]
        time.sleep(IDLE_S)
        connection.request("GET", "/livez")  # on the same socket: no reconnect in between
        again = connection.getresponse()
        again.read()
        assert again.status == 200
        assert connection.sock.getsockname()[1] == local_port
    finally:
        connection.close()
