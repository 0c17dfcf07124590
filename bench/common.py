"""What every benchmark shares: the JSON-lines output with the machine's context, a fresh temporary
database holding a small demo world, the real server in a subprocess, and a threaded HTTP load
generator (httpx, or the minimal ``RawHttp`` where the server's throughput is measured) that
records every latency, the CPU time the server spent meanwhile and its own.

The server's CPU time (user + system of its process and every process under it, read from
``/proc``) is the figure that does not depend on the load generator, which runs on the same two
cores and takes the better part of one: CPU per request tells a change to the server apart from a
run whose clients were slower."""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The benchmarks configure huiyuan like an operator would: through its environment variables, set
# before anything reads the settings. The API rate limit would otherwise cap the load at 600/minute.
BENCH_ENV = {
    "HUIYUAN_ENV": "development",
    "HUIYUAN_LOG_LEVEL": "WARNING",
    "HUIYUAN_JOBS_BACKEND": "memory",
    "HUIYUAN_RUN_WORKER_IN_PROCESS": "false",
    "HUIYUAN_API_RATE_LIMIT": "100000000/minute",
}
os.environ.update(BENCH_ENV)


def machine() -> dict[str, Any]:
    load1, _load5, _load15 = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(terse=True),
        "load1": round(load1, 2),
    }


def emit(name: str, value: float, unit: str, **context: Any) -> dict[str, Any]:
    """Print one figure as a JSON line (and return it)."""
    figure = {
        "name": name,
        "value": round(value, 3 if value < 10 else 1),
        "unit": unit,
        **context,
        **machine(),
    }
    print(json.dumps(figure, ensure_ascii=False), flush=True)
    return figure


@dataclass
class BenchWorld:
    """A small demo world in a temporary SQLite file, and what requests against it need."""

    dir: Path
    url: str
    brand_id: int
    brand_code: str
    api_key: str
    store_codes: list[str]
    member_numbers: list[str]
    skus: list[tuple[str, int]]  # (sku, list price in fen)

    def order(self, rng: random.Random, number: str) -> dict[str, Any]:
        """A valid order body for POST /api/v1/orders: 1–3 lines, maybe a member, one payment."""
        lines = []
        total = 0
        for sku, list_fen in rng.sample(self.skus, rng.randint(1, 3)):
            qty = rng.randint(1, 2)
            deal = list_fen if rng.random() < 0.7 else list_fen * 9 // 10
            total += deal * qty
            lines.append(
                {"sku": sku, "quantity": qty, "list_price": _yuan(list_fen), "deal_price": _yuan(deal)}
            )
        body: dict[str, Any] = {
            "order_number": number,
            "store_code": rng.choice(self.store_codes),
            "channel": "store",
            "items": lines,
            "payments": [{"method": "wechat_pay", "amount": _yuan(total)}],
        }
        if rng.random() < 0.9:
            body["member_number"] = rng.choice(self.member_numbers)
        return body


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def make_world(members: int) -> BenchWorld:
    """Migrate a fresh temporary SQLite database and build a demo world of ``members`` into it."""
    from sqlalchemy import select

    from huiyuan.demo.world import build_world
    from huiyuan.kit.db import Database
    from huiyuan.kit.migrate import upgrade
    from huiyuan.members.models import Member
    from huiyuan.orders.models import Product
    from huiyuan.tenancy.models import Store

    folder = Path(tempfile.mkdtemp(prefix="huiyuan-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    world = build_world(db, members=members, seed=1, months=1)
    brand = world.brands[0]
    with db.unit_of_work(write=False) as s:
        numbers = list(s.scalars(select(Member.member_number).where(Member.brand_id == brand.id)))
        skus = [
            (sku, int(price * 100))
            for sku, price in s.execute(
                select(Product.sku, Product.list_price).where(Product.brand_id == brand.id)
            ).tuples()
        ]
        stores = list(s.scalars(select(Store.code).where(Store.brand_id == brand.id)))
    db.dispose()
    return BenchWorld(folder, url, brand.id, brand.code, brand.api_key, stores, numbers, skus)


@contextmanager
def postgresql_database(admin_url: str, purpose: str) -> Iterator[str]:
    """A new database on the server of ``admin_url`` (its maintenance database), dropped afterwards."""
    import uuid

    import psycopg

    name = f"huiyuan_bench_{purpose}_{uuid.uuid4().hex[:8]}"
    admin = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(url: str, *, worker: bool = False, workers: int = 1) -> Iterator[str]:
    """``huiyuan serve --no-worker`` (one uvicorn worker) on a free port; yields its base URL.
    With ``worker=True`` the worker (outbox dispatcher, jobs) runs inside the server process (with
    ``workers`` > 1: ``--workers N`` server processes, the worker in the supervising process)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "huiyuan", "serve", "--host", "127.0.0.1"]
    if not worker:
        cmd.append("--no-worker")
    cmd += ["--port", str(port), "--db", url]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, **BENCH_ENV}
    if worker:
        env.update({"HUIYUAN_RUN_WORKER_IN_PROCESS": "true", "HUIYUAN_RUN_SCHEDULES": "false"})
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        with served_by(base, proc.pid):
            yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


_SERVER_PIDS: dict[str, int] = {}  # base URL → pid of the server process serving it


@contextmanager
def served_by(base: str, pid: int) -> Iterator[None]:
    """While the block runs, ``server_cpu_seconds(base)`` reads the CPU time of process ``pid``."""
    _SERVER_PIDS[base] = pid
    try:
        yield
    finally:
        _SERVER_PIDS.pop(base, None)


def _cpu_of(pid: int) -> tuple[int, float]:
    """(parent pid, user + system seconds) of a live process, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(base: str) -> float | None:
    """CPU seconds spent so far by the server at ``base`` and every live process under it (the
    ``--workers N`` server processes); None when the server is not known or ``/proc`` is missing."""
    root = _SERVER_PIDS.get(base)
    if root is None or not os.path.isdir("/proc"):
        return None
    procs: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                procs[int(entry)] = _cpu_of(int(entry))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in procs.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
        todo.extend(children.get(pid, ()))
    return total


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    server_cpu_s: float | None = None  # CPU seconds the server spent during the run
    client_cpu_s: float | None = None  # CPU seconds this process (the load generator) spent

    def server_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return round(self.server_cpu_s / self.requests * 1000, 3)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds (nearest rank)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


Request = Callable[[int, int], tuple[str, str, bytes | None]]


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on one socket: the request's bytes written at once, the
    answer read by its ``Content-Length``. Written by hand because the load generator shares the
    two cores with the server it measures: httpx spends ~1 ms of CPU per request here (measured with
    ``client_us_per_event`` in ``bench.events``), which at batches of 100 took a quarter of the
    machine from the server. Enough for huiyuan's answers (always with a length); not a general client."""

    def __init__(self, base: str, headers: dict[str, str], timeout: float = 60) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fixed = {"Host": f"{host}:{port}" if port else host, **headers}
        self.head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self.buffer = b""

    def request(self, method: str, path: str, body: bytes | None = None) -> int:
        """Send one request and read its whole answer; the status code."""
        body = body or b""
        head = f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode("latin-1") + body)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._read()
        lines = self.buffer[:end].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < end + 4 + length:
            self._read()
        self.buffer = self.buffer[end + 4 + length :]
        return status

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def hammer(
    base: str,
    headers: dict[str, str],
    make: Request,
    *,
    clients: int,
    seconds: float,
    raw: bool = False,
) -> LoadResult:
    """``clients`` threads, each with its own keep-alive connection, send ``make(client, n)`` requests
    back to back for ``seconds``; every latency and non-2xx status is kept. ``raw``: each thread sends
    with ``RawHttp`` instead of httpx (a lighter load generator, for the benchmarks that measure the
    server's throughput rather than its latency under a typical client)."""
    import httpx

    result = LoadResult(seconds=seconds)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def send_with(client_no: int, send: Callable[[str, str, bytes | None], int]) -> None:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        start.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            method, path, body = make(client_no, n)
            n += 1
            t0 = time.perf_counter()
            status = send(method, path, body)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        with lock:
            result.latencies.extend(latencies)
            for code, count in statuses.items():
                result.statuses[code] = result.statuses.get(code, 0) + count
                if code >= 300:
                    result.errors += count

    def run(client_no: int) -> None:
        if raw:
            connection = RawHttp(base, headers)
            try:
                send_with(client_no, connection.request)
            finally:
                connection.close()
            return
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            send_with(
                client_no, lambda method, path, body: http.request(method, path, content=body).status_code
            )

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    cpu_before = server_cpu_seconds(base)
    client_before = time.process_time()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - began
    result.client_cpu_s = time.process_time() - client_before
    cpu_after = server_cpu_seconds(base)
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu_s = cpu_after - cpu_before
    return result
