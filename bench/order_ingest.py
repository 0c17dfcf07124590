"""(a) Order ingestion through the API, one order per request, against the trivial ``GET /ping`` of the
same server in the same run: the same clients hammer ``/ping``, then ``POST /api/v1/orders``, then
``/ping`` again (so drift of a shared machine shows), then one client alone posts orders. Reports
req/s, p50/p99 and the ratio orders/ping."""

from __future__ import annotations

import json
import os
import random

from bench.common import BenchWorld, LoadResult, Request, emit, hammer


def _figure(name: str, r: LoadResult, **context: object) -> dict[str, object]:
    return emit(
        name,
        r.rate,
        "req/s",
        p50_ms=round(r.percentile(50), 2),
        p99_ms=round(r.percentile(99), 2),
        requests=r.requests,
        errors=r.errors,
        server_ms_per_request=r.server_ms_per_request(),
        seconds=round(r.seconds, 1),
        **context,
    )


def run(world: BenchWorld, base: str, *, clients: int, seconds: float, workers: int = 1) -> None:
    headers = {"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"}
    rngs = [random.Random(i) for i in range(clients)]
    pid = os.getpid()

    def ping(_client: int, _n: int) -> tuple[str, str, bytes | None]:
        return "GET", "/ping", None

    def orders_tagged(tag: str) -> Request:
        def order(client: int, n: int) -> tuple[str, str, bytes | None]:
            body = world.order(rngs[client], f"BENCH-{pid}-{tag}-{client}-{n}")
            return "POST", "/api/v1/orders", json.dumps(body).encode()

        return order

    context: dict[str, object] = {
        "clients": clients,
        "server": "huiyuan serve --no-worker"
        + (f" --workers {workers}" if workers > 1 else " (1 uvicorn worker)"),
        "db": "sqlite",
    }
    before = hammer(base, headers, ping, clients=clients, seconds=seconds)
    orders = hammer(base, headers, orders_tagged("many"), clients=clients, seconds=seconds)
    after = hammer(base, headers, ping, clients=clients, seconds=seconds)
    # One client alone shows the cost of an order without write-lock contention between requests.
    single = hammer(base, headers, orders_tagged("one"), clients=1, seconds=seconds)
    ping_rate = (before.rate + after.rate) / 2
    _figure("order_ingest.ping", before, phase="before", **context)
    _figure(
        "order_ingest.orders", orders, statuses={str(k): v for k, v in orders.statuses.items()}, **context
    )
    _figure("order_ingest.ping", after, phase="after", **context)
    _figure(
        "order_ingest.orders_one_client",
        single,
        statuses={str(k): v for k, v in single.statuses.items()},
        **{**context, "clients": 1},
    )
    emit(
        "order_ingest.ratio",
        orders.rate / ping_rate if ping_rate else 0.0,
        "orders/ping",
        orders_rps=round(orders.rate, 1),
        ping_rps=round(ping_rate, 1),
        orders_p99_ms=round(orders.percentile(99), 2),
        ping_p99_ms=round(max(before.percentile(99), after.percentile(99)), 2),
        **context,
    )
