"""``python -m bench.run [--quick] [--only NAME ...]``: run the benchmarks, one JSON line per figure.

(a) order_ingest — one order per request through the real server vs ``GET /ping`` of the same server;
(b) bulk_orders — orders/s through ``/api/v1/orders/batch`` and through ``record_orders_bulk``, and
    bulk import with earning end to end (import, then the outbox dispatcher until nothing is left);
(c) member_import — rows/s of the member importer on a generated CSV;
(d) points — the expiry job over many lots vs a bare UPDATE, checkout reserve + confirm, earning
    from bulk-imported orders through the outbox; order_earn — orders through the API with the
    server's worker earning their points, against ``GET /ping`` of the same server;
(e) coupon_codes — a million coupon codes vs a plain ``secrets.choice`` loop;
(f) coupons — issues of one template under contention, a grab of the last coupons, and cart
    evaluation with 20 coupons in the wallet, each against ``GET /ping``;
(g) events — ``/v1/batch`` ingestion (batches of 100 and 500, random ids) through the real server
    (two processes) vs a raw insert of the same rows into the same table, and where the time goes
    per stage;
(h) oneid — batch OneID over 10M links vs bare scipy connected components, resolve p50/p99;
(i) warehouse — the warehouse sync rate, and KPI breakdown, KPI trend and RFM through huiyuan's
    Ibis code vs hand-written DuckDB queries on the same file;
(j) profile — a person's event timeline over ~1M events by scan vs through the person index, the
    index job's rate, and ``/v1/batch`` alone vs beside the index job (a database of its own).
"""

from __future__ import annotations

import argparse
import shutil
import time

from bench import bulk_orders, coupon_codes, coupons, member_import, oneid, order_ingest, points
from bench import events as events_bench
from bench import profile as profile_bench
from bench import warehouse as warehouse_bench
from bench.common import emit, make_world, server

ALL = (
    "order_earn",
    "order_ingest",
    "bulk_orders",
    "member_import",
    "points",
    "coupon_codes",
    "coupons",
    "events",
    "oneid",
    "warehouse",
    "profile",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test, noisier figures)")
    parser.add_argument("--only", nargs="+", choices=ALL, default=list(ALL))
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients for order_ingest")
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="server processes (huiyuan serve --workers N) for order_ingest and the order → earn figure",
    )
    parser.add_argument("--import-rows", type=int, default=None, help="rows of the member import CSV")
    parser.add_argument("--lots", type=int, default=None, help="due lots for the points expiry figure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    parser.add_argument(
        "--floor-postgresql",
        default=None,
        help="a PostgreSQL server's maintenance database (postgresql+psycopg://user@host:port/postgres):"
        " bulk_orders.write_floor also copies the rows into a new database there",
    )
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else 20.0
    batches = 2 if args.quick else 10
    rows = args.import_rows or (5_000 if args.quick else 20_000)

    started = time.perf_counter()
    world = make_world(members=1_000 if args.quick else 5_000)
    emit(
        "setup.world",
        time.perf_counter() - started,
        "s",
        brand_members=len(world.member_numbers),
        skus=len(world.skus),
    )
    try:
        if "order_earn" in args.only:
            points.run_order_earn_api(
                world, clients=args.clients, seconds=seconds, workers=args.server_workers
            )
        if "order_ingest" in args.only or "bulk_orders" in args.only:
            with server(world.url, workers=args.server_workers) as base:
                if "order_ingest" in args.only:
                    order_ingest.run(
                        world, base, clients=args.clients, seconds=seconds, workers=args.server_workers
                    )
                if "bulk_orders" in args.only:
                    bulk_orders.run_api(world, base, batches=batches)
        if "bulk_orders" in args.only:
            bulk_orders.run_service(world, batches=batches)
            bulk_orders.run_import_earn(world, batches=batches, earn=False)
            bulk_orders.run_import_earn(
                world, batches=batches, earn=True, floor_postgresql=args.floor_postgresql
            )
        if "member_import" in args.only:
            member_import.run(world, rows=rows)
        if "points" in args.only:
            points.run_expiry(world, lots=args.lots or (100_000 if args.quick else 1_000_000))
            points.run_checkout(world, pairs=200 if args.quick else 1_000)
            points.run_earn_orders(world, batches=2 if args.quick else 10)
        if "coupon_codes" in args.only:
            coupon_codes.run(args.quick)
        if "coupons" in args.only:
            coupons.run(world, clients=args.clients, seconds=seconds)
        if "oneid" in args.only:
            oneid.run_batch(1_000_000 if args.quick else 10_000_000)
            oneid.run_resolve(world, clients=args.clients, seconds=seconds)
        if "events" in args.only:
            # As the goal is stated: two server processes on two cores, the client libraries' random ids.
            events_bench.run(world.url, world.brand_id, seconds=seconds, workers=2, message_ids="uuid")
        if "warehouse" in args.only:
            if args.quick:
                warehouse_bench.run(members=3_000, months=6, events=50_000, repeat=3)
            else:
                warehouse_bench.run(members=50_000, months=12, events=500_000)
        if "profile" in args.only:
            profile_bench.run_fresh(
                events=100_000 if args.quick else 1_000_000, people=50 if args.quick else 200, seconds=seconds
            )
    finally:
        if not args.keep:
            shutil.rmtree(world.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
