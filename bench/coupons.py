"""(f) Coupons through the real server, each against ``GET /ping`` of the same server in the same run.

* ``coupons.claim_contention`` — ``clients`` threads issue coupons of ONE template to different
  members (``POST /api/v1/coupons/issue``) back to back: every issue takes that template's row lock
  (stock, limits and budget are exact under it), so this is the worst case for contention.
* ``coupons.grab_last`` — 200 requests from ``clients`` threads for the last 50 coupons of a template:
  how long the rush takes and that exactly 50 got one.
* ``coupons.cart_eval`` — ``POST /api/v1/coupons/evaluate`` for a member holding 20 coupons of 20
  templates (stackable and exclusive, thresholds, percents, category rules) on a 5-line cart;
  latency percentiles, plus the in-process ``cart.evaluate`` alone for the same input.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any

from bench.common import BenchWorld, emit, hammer, server

CART = {
    "lines": [
        {
            "line_id": "1",
            "sku": "COAT-1",
            "unit_price": "899.00",
            "quantity": 1,
            "category_path": "apparel/coats",
        },
        {
            "line_id": "2",
            "sku": "TEE-1",
            "unit_price": "99.00",
            "quantity": 3,
            "category_path": "apparel/tees",
        },
        {
            "line_id": "3",
            "sku": "SHOE-1",
            "unit_price": "459.00",
            "quantity": 1,
            "category_path": "shoes/running",
        },
        {
            "line_id": "4",
            "sku": "SOCK-1",
            "unit_price": "29.90",
            "quantity": 4,
            "category_path": "accessories/socks",
        },
        {
            "line_id": "5",
            "sku": "CAP-1",
            "unit_price": "129.00",
            "quantity": 1,
            "category_path": "accessories/caps",
        },
    ],
    "shipping_fee": "12.00",
    "scene": "online",
}


def _rules(n: int) -> dict[str, Any]:
    """Twenty different templates' rules: a mix a real wallet holds."""
    discounts: list[dict[str, Any]] = [
        {"kind": "threshold", "threshold": f"{200 + 50 * (n % 6)}.00", "amount": f"{20 + 5 * (n % 4)}.00"},
        {"kind": "amount_off", "amount": f"{5 + n % 7}.00"},
        {"kind": "percent_off", "percent": f"{5 + n % 10}", "cap": "80.00"},
        {"kind": "free_shipping"},
        {"kind": "threshold", "threshold": "100.00", "amount": "10.00", "repeat": True, "max_times": 5},
    ]
    conditions: list[dict[str, Any]] = [
        {},
        {"categories": ["apparel"]},
        {"exclude_categories": ["accessories"]},
        {"min_spend": "300.00"},
        {"categories": ["shoes"], "scenes": ["online"]},
    ]
    return {
        "discount": discounts[n % len(discounts)],
        "conditions": conditions[(n // 2) % len(conditions)],
        "stacking": "exclusive" if n % 4 == 0 else "stackable",
        "validity": {"kind": "relative", "days": 30},
    }


def _setup(world: BenchWorld) -> dict[str, Any]:
    """Templates and the coupons of one member, written through the services."""
    from sqlalchemy import select

    from huiyuan.coupons import issuing, templates
    from huiyuan.coupons.schemas import TemplateIn
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.members.models import Member

    db = Database(world.url)
    actor = system_for_brand(world.brand_id)
    pid = os.getpid()
    with db.unit_of_work(actor.scope) as s:
        member_ids = list(
            s.scalars(select(Member.id).where(Member.brand_id == world.brand_id).order_by(Member.id))
        )
        busy = templates.create_template(
            s,
            actor=actor,
            data=TemplateIn.model_validate(
                {
                    "code": f"BUSY-{pid}",
                    "name": "压测券",
                    "status": "active",
                    "rules": _rules(1),
                    "stock_total": 10_000_000,
                }
            ),
        )
        last = templates.create_template(
            s,
            actor=actor,
            data=TemplateIn.model_validate(
                {
                    "code": f"LAST-{pid}",
                    "name": "秒杀券",
                    "status": "active",
                    "rules": _rules(1),
                    "stock_total": 50,
                }
            ),
        )
        wallet = []
        for n in range(20):
            t = templates.create_template(
                s,
                actor=actor,
                data=TemplateIn.model_validate(
                    {"code": f"W{n}-{pid}", "name": f"券{n}", "status": "active", "rules": _rules(n)}
                ),
            )
            wallet.append(
                issuing.issue(
                    s, actor=actor, template_id=t.id, member_id=member_ids[0], key=f"w{n}", channel="manual"
                ).coupon.id
            )
        out = {"busy": busy.id, "last": last.id, "members": member_ids, "wallet": wallet}
    db.dispose()
    return out


def _evaluate_in_process(world: BenchWorld, member_id: int, runs: int) -> list[float]:
    from huiyuan.coupons import checkout
    from huiyuan.coupons.schemas import CartIn
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand

    db = Database(world.url)
    actor = system_for_brand(world.brand_id)
    cart = CartIn.model_validate(CART)
    latencies = []
    with db.unit_of_work(actor.scope, write=False) as s:
        for _ in range(runs):
            t = time.perf_counter()
            checkout.evaluate(s, brand_id=world.brand_id, member_id=member_id, data=cart)
            latencies.append((time.perf_counter() - t) * 1000)
    db.dispose()
    return sorted(latencies)


def _pct(ordered: list[float], p: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)


def run(world: BenchWorld, *, clients: int, seconds: float) -> None:
    setup = _setup(world)
    members = setup["members"]
    headers = {"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"}
    pid = os.getpid()

    def ping(_c: int, _n: int) -> tuple[str, str, bytes | None]:
        return "GET", "/ping", None

    def claim(c: int, n: int) -> tuple[str, str, bytes | None]:
        body = {
            "template_id": setup["busy"],
            "member_id": members[(c * 7919 + n) % len(members)],
            "idempotency_key": f"bench-{pid}-{c}-{n}",
        }
        return "POST", "/api/v1/coupons/issue", json.dumps(body).encode()

    def evaluate(_c: int, _n: int) -> tuple[str, str, bytes | None]:
        return (
            "POST",
            "/api/v1/coupons/evaluate",
            json.dumps({"member_id": members[0], "cart": CART}).encode(),
        )

    with server(world.url) as base:
        pinged = hammer(base, headers, ping, clients=clients, seconds=seconds)
        claims = hammer(base, headers, claim, clients=clients, seconds=seconds)
        evals = hammer(base, headers, evaluate, clients=1, seconds=seconds)
        rush = _grab_last(base, headers, setup["last"], members, clients=clients, pid=pid)
    common = {
        "clients": clients,
        "server": "huiyuan serve (1 uvicorn worker)",
        "db": "sqlite",
        "ping_rps": round(pinged.rate, 1),
    }
    emit(
        "coupons.claim_contention",
        claims.rate,
        "issues/s",
        p50_ms=round(claims.percentile(50), 2),
        p99_ms=round(claims.percentile(99), 2),
        ratio_to_ping=round(claims.rate / pinged.rate, 3) if pinged.rate else 0.0,
        requests=claims.requests,
        statuses={str(k): v for k, v in claims.statuses.items()},
        path="POST /api/v1/coupons/issue, one template, distinct members and keys",
        **common,
    )
    emit(
        "coupons.grab_last",
        rush["seconds"],
        "s",
        **{k: v for k, v in rush.items() if k != "seconds"},
        **common,
    )
    in_process = _evaluate_in_process(world, members[0], 300)
    emit(
        "coupons.cart_eval",
        evals.rate,
        "req/s",
        p50_ms=round(evals.percentile(50), 2),
        p99_ms=round(evals.percentile(99), 2),
        ratio_to_ping=round(evals.rate / pinged.rate, 3) if pinged.rate else 0.0,
        in_process_p50_ms=_pct(in_process, 50),
        in_process_p99_ms=_pct(in_process, 99),
        coupons_in_wallet=len(setup["wallet"]),
        cart_lines=len(CART["lines"]),
        requests=evals.requests,
        path="POST /api/v1/coupons/evaluate, one client; in_process: checkout.evaluate alone",
        **{**common, "clients": 1},
    )


def _grab_last(
    base: str, headers: dict[str, str], template_id: int, members: list[int], *, clients: int, pid: int
) -> dict[str, Any]:
    """200 requests for the last 50 coupons, ``clients`` at a time."""
    import httpx

    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    todo = list(range(200))
    gate = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            gate.wait()
            while True:
                with lock:
                    if not todo:
                        return
                    n = todo.pop()
                body = {
                    "template_id": template_id,
                    "member_id": members[n % len(members)],
                    "idempotency_key": f"grab-{pid}-{n}",
                }
                r = http.post("/api/v1/coupons/issue", content=json.dumps(body).encode())
                with lock:
                    statuses[r.status_code] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    gate.wait()
    for t in threads:
        t.join()
    return {
        "seconds": time.perf_counter() - started,
        "requests": 200,
        "stock": 50,
        "issued": statuses.get(201, 0),
        "refused_409": statuses.get(409, 0),
        "other": sum(v for k, v in statuses.items() if k not in (201, 409)),
        "exactly_stock_issued": statuses.get(201, 0) == 50,
    }
