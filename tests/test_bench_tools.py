"""The benchmarks' own tools, where a mistake would bend every figure: the minimal HTTP client of the
load generator (``bench.common.RawHttp``) and the request bodies of ``bench.events``."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn answers

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 200 if self.headers.get("Authorization") == "Basic x" else 401
        answer = b'{"length": %d}' % len(body) + b" " * (70_000 if self.path == "/big" else 0)
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


def bench(module: str) -> Any:
    """A bench module, imported without keeping the environment it sets for the benchmarks."""
    saved = dict(os.environ)
    try:
        return importlib.import_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_raw_client_reads_each_answer_whole_on_one_connection(echo: str) -> None:
    raw_http = bench("bench.common").RawHttp
    client = raw_http(echo, {"Authorization": "Basic x"})
    try:
        assert client.request("POST", "/", b"abc") == 200
        assert client.request("POST", "/big", b"x" * 300_000) == 200  # an answer of several reads
        assert client.buffer == b""
        assert client.request("POST", "/", None) == 200
    finally:
        client.close()
    other = raw_http(echo, {"Authorization": "Basic y"})
    try:
        assert other.request("POST", "/", b"{}") == 401
    finally:
        other.close()


@pytest.mark.parametrize("uuid_ids", [True, False])
def test_bench_bodies_carry_new_ids_and_ordered_times(uuid_ids: bool) -> None:
    clock = iter(range(1_800_000_000_000, 1_900_000_000_000, 1_000))
    bodies = bench("bench.events")._Bodies(100, uuid_ids=uuid_ids, clock=lambda: next(clock))
    first, second = (orjson.loads(bodies.body(n, f"{n:016d}")) for n in range(2))
    ids = [m["messageId"] for m in first["batch"] + second["batch"]]
    assert len(set(ids)) == 200
    if uuid_ids:
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    times = [m["timestamp"] for m in first["batch"] + second["batch"]]
    assert times == sorted(times) and times[0] > "2027" and first["sentAt"] == first["batch"][-1]["timestamp"]
    assert first["batch"][0].keys() >= {"type", "anonymousId", "context"}
