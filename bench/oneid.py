"""(g) OneID: the batch engine over 10M links against bare scipy, and resolve latency through the API.

* ``oneid.batch_10m`` — identifiers generated as strings (numpy fixed-width bytes, e.g.
  ``b"m:000123456"``), mapped to integers, connected components and fresh OneIDs
  (``identity.graph``), against ``scipy.sparse.csgraph.connected_components`` on the same graph's
  pre-built integer edges (CSR build + components) in the same run. Goal: within 5×.
* ``oneid.recompute_stable_10m`` — the same links after 1% were removed and 1% added, recomputed
  against the first run's OneIDs: stable assignment, merges and splits listed.
* ``oneid.resolve`` / ``oneid.resolve_batch`` — ``GET /api/v1/oneid/resolve`` (one phone) and
  ``POST /api/v1/oneid/resolve/batch`` (1,000 phones) through the real server, p50/p99, against
  ``GET /ping`` and an authenticated one-query call (``GET /api/v1/oneid/settings``) of the same
  server. The graph is seeded from the demo world's member records by the
  real member-record linking (``identity.ingest.sync_member``).

``python -m bench.oneid [--quick] [--links N]`` runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from typing import Any

import numpy as np

from bench.common import BenchWorld, emit, hammer, make_world, server


def keys(prefix: bytes, numbers: np.ndarray, digits: int) -> np.ndarray:
    """``prefix`` + zero-padded decimal ``numbers`` as a fixed-width bytes array, built without a
    Python loop (the generator is not what is measured)."""
    n = len(numbers)
    out = np.empty((n, len(prefix) + digits), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    rest = numbers.astype(np.int64).copy()
    for d in range(digits - 1, -1, -1):
        out[:, len(prefix) + d] = ord("0") + rest % 10
        rest //= 10
    return out.view(f"S{len(prefix) + digits}").reshape(n)


def make_links(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` links: each a new device id joined to a member number (one member per ~3 links), or,
    for 5%, to an earlier device (gluing people into larger groups). Returns the string keys and the
    same links as integer edges (member p → p, device i → members + i)."""
    rng = np.random.default_rng(seed)
    members = max(1, n // 3)
    person = rng.integers(0, members, n)
    glue = rng.random(n) < 0.05
    earlier = (rng.random(n) * np.arange(n)).astype(np.int64)
    right = keys(b"device_id:d", np.arange(n), 10)
    left = np.where(glue, keys(b"device_id:d", earlier, 10), keys(b"member_number:m", person, 10))
    int_left = np.where(glue, members + earlier, person)
    int_right = members + np.arange(n)
    # dense ids, as an integer pipeline would hold them (members never drawn are no nodes)
    _, dense = np.unique(np.concatenate([int_left, int_right]), return_inverse=True)
    dense = dense.astype(np.int32)
    return left, right, dense[:n], dense[n:]


def bare_scipy(left: np.ndarray, right: np.ndarray, nodes: int) -> tuple[float, int]:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    started = time.perf_counter()
    graph = csr_matrix((np.ones(len(left), dtype=np.bool_), (left, right)), shape=(nodes, nodes))
    count, _ = connected_components(graph, directed=False)
    return time.perf_counter() - started, int(count)


def run_batch(n: int) -> None:
    from huiyuan.identity import graph

    left, right, int_left, int_right = make_links(n)
    nodes = int(max(int_left.max(), int_right.max())) + 1
    bare_scipy(int_left[:1000], int_right[:1000], nodes)  # warm-up: scipy's first call
    base, base_count = bare_scipy(int_left, int_right, nodes)

    minted = [0]

    def mint(k: int) -> np.ndarray:
        out = np.arange(minted[0] + 1, minted[0] + k + 1, dtype=np.int64)
        minted[0] += k
        return out

    stages: dict[str, float] = {}
    started = time.perf_counter()
    (a, b), count_nodes = graph.factorize(left, right)
    stages["map_s"] = time.perf_counter() - started
    t = time.perf_counter()
    count, labels = graph.components(a, b, count_nodes)
    stages["components_s"] = time.perf_counter() - t
    t = time.perf_counter()
    empty = np.full(count_nodes, graph.NONE, dtype=np.int64)
    first = graph.assign(labels, count, empty, empty, mint)
    stages["assign_s"] = time.perf_counter() - t
    total = time.perf_counter() - started
    assert count == base_count, (count, base_count)
    emit(
        "oneid.batch_10m" if n >= 10_000_000 else "oneid.batch",
        total,
        "s",
        links=n,
        identifiers=count_nodes,
        oneids=count,
        **{k: round(v, 2) for k, v in stages.items()},
        baseline_s=round(base, 2),
        baseline="scipy connected_components on pre-built int32 edges (CSR build + components)",
        ratio_to_baseline=round(total / base, 2),
        goal="<= 5",
    )

    # 1% of the links removed, 1% new ones added; recomputed against the first run's OneIDs.
    rng = np.random.default_rng(2)
    keep = rng.random(n) >= 0.01
    extra = int(n * 0.01)
    new_left = keys(b"device_id:d", rng.integers(0, n, extra), 10)
    new_right = keys(b"device_id:d", rng.integers(0, n, extra), 10)
    left2 = np.concatenate([left[keep], new_left])
    right2 = np.concatenate([right[keep], new_right])
    key_of_node = np.empty(count_nodes, dtype=left.dtype)
    key_of_node[a] = left
    key_of_node[b] = right
    started = time.perf_counter()
    (a2, b2, known), count2 = graph.factorize(left2, right2, key_of_node)
    current = np.full(count2, graph.NONE, dtype=np.int64)
    current[known] = first.oneid
    count_after, labels2 = graph.components(a2, b2, count2)
    again = graph.assign(labels2, count_after, current, current.copy(), mint)
    stable = time.perf_counter() - started
    emit(
        "oneid.recompute_stable_10m" if n >= 10_000_000 else "oneid.recompute_stable",
        stable,
        "s",
        links=len(left2),
        oneids=count_after,
        merges=len(again.merges),
        splits=len(again.splits),
        minted=len(again.minted),
        revived=len(again.revived),
        baseline_s=round(base, 2),
        ratio_to_baseline=round(stable / base, 2),
    )


def _seed_graph(world: BenchWorld) -> list[str]:
    """Link every demo member record into the graph; the members' phone numbers."""
    from sqlalchemy import select

    from huiyuan.identity import config
    from huiyuan.identity.ingest import sync_member_by_id
    from huiyuan.kit import pii
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.members.models import Member

    db = Database(world.url)
    scope = system_for_brand(world.brand_id).scope
    started = time.perf_counter()
    with db.unit_of_work(scope, write=False) as s:
        rows = list(s.execute(select(Member.id, Member.phone_enc).where(Member.brand_id == world.brand_id)))
    for start in range(0, len(rows), 500):
        with db.unit_of_work(scope) as s:
            writer = config.writer(s, world.brand_id, "bench")
            for member_id, _ in rows[start : start + 500]:
                sync_member_by_id(writer, s, member_id)
    elapsed = time.perf_counter() - started
    emit("oneid.seed_members", len(rows) / elapsed, "members/s", members=len(rows), seconds=round(elapsed, 2))
    db.dispose()
    return [pii.decrypt(p) for _, p in rows if p]


def run_resolve(world: BenchWorld, *, clients: int, seconds: float) -> None:
    phones = _seed_graph(world)
    headers = {"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"}
    rng = random.Random(3)
    batch = json.dumps(
        {"identifiers": [{"type": "phone", "value": rng.choice(phones)} for _ in range(1000)]}
    ).encode()

    def ping(_c: int, _n: int) -> tuple[str, str, bytes | None]:
        return "GET", "/ping", None

    def authed(_c: int, _n: int) -> tuple[str, str, bytes | None]:
        return "GET", "/api/v1/oneid/settings", None

    def resolve(c: int, n: int) -> tuple[str, str, bytes | None]:
        return "GET", f"/api/v1/oneid/resolve?type=phone&value={phones[(c * 7919 + n) % len(phones)]}", None

    def resolve_batch(_c: int, _n: int) -> tuple[str, str, bytes | None]:
        return "POST", "/api/v1/oneid/resolve/batch", batch

    with server(world.url) as base:
        pinged = hammer(base, headers, ping, clients=clients, seconds=seconds)
        plain = hammer(base, headers, authed, clients=clients, seconds=seconds)
        single = hammer(base, headers, resolve, clients=clients, seconds=seconds)
        many = hammer(base, headers, resolve_batch, clients=2, seconds=seconds)
    common: dict[str, Any] = {
        "clients": clients,
        "server": "huiyuan serve (1 uvicorn worker)",
        "db": "sqlite",
    }
    for name, result, path in (
        ("oneid.resolve", single, "GET /api/v1/oneid/resolve (one phone, identifiers + golden record)"),
        ("oneid.resolve_batch", many, "POST /api/v1/oneid/resolve/batch (1,000 phones)"),
    ):
        emit(
            name,
            result.percentile(99),
            "ms p99",
            p50_ms=round(result.percentile(50), 2),
            rps=round(result.rate, 1),
            ping_rps=round(pinged.rate, 1),
            ping_p99_ms=round(pinged.percentile(99), 2),
            ratio_to_ping=round(result.rate / pinged.rate, 3) if pinged.rate else 0.0,
            authed_rps=round(plain.rate, 1),
            authed_p99_ms=round(plain.percentile(99), 2),
            authed="GET /api/v1/oneid/settings: API key check + one query, the floor of any API call",
            ratio_to_authed=round(result.rate / plain.rate, 3) if plain.rate else 0.0,
            requests=result.requests,
            statuses={str(k): v for k, v in result.statuses.items()},
            identifiers_in_graph=len(phones),
            path=path,
            **common,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oneid", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M links and short API runs")
    parser.add_argument("--links", type=int, default=None, help="links of the batch figure")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    run_batch(args.links or (1_000_000 if args.quick else 10_000_000))
    world = make_world(members=1_000 if args.quick else 5_000)
    try:
        run_resolve(world, clients=args.clients, seconds=5.0 if args.quick else 15.0)
    finally:
        shutil.rmtree(world.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
