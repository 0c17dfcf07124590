"""(i) Warehouse and analyses: the sync rate, and each analysis through huiyuan's own code path
(Ibis over the warehouse file) against a hand-written DuckDB query computing the same result, on the
same connection, in the same run.

* ``warehouse.build`` — seconds to build the demo world (not a product figure);
* ``warehouse.sync`` — rows/s of a first, full ``huiyuan.warehouse.sync`` into an empty file;
* ``warehouse.kpi_breakdown`` — ``kpi.breakdown`` by channel over the last 365 days vs the
  hand-written ``GROUP BY``; ``ratio`` = ours ÷ hand-written (goal ≤ 1.5);
* ``warehouse.kpi_trend`` — ``kpi.trend`` by week vs a hand-written weekly ``GROUP BY``;
* ``warehouse.rfm`` — ``rfm.rfm`` (quantile scores) vs a hand-written window query;
* ``warehouse.funnel`` — a two-step sequential funnel (the brand's two most frequent events, one-day
  window) over all its events vs a hand-written query giving the same result: people at each step
  and the median and 90th-percentile time to convert; ``counts_only_ms`` times a simpler query that
  gives the two counts only;
* ``warehouse.retention`` — weekly first-time retention of the most frequent event vs a
  hand-written cohort query.

"Ours" is the path the API takes, ``analytics.engine.query``: the request is the key of its
compiled SQL (built and compiled on the first call, the warm-up), rows come back as dicts; the
hand-written query returns tuples.

Each timing is the median of ``--repeat`` runs after one warm-up; results are checked equal first.
``python -m bench.warehouse [--members N] [--months M] [--events E]`` runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import emit


def _median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _build(folder: Path, members: int, months: int, events: int) -> int:
    """Build the demo world and sync it into ``folder/warehouse.duckdb``; returns the first brand's id."""
    from huiyuan.demo.world import build_world
    from huiyuan.kit.db import Database
    from huiyuan.kit.migrate import upgrade
    from huiyuan.warehouse import sync as wsync

    url = f"sqlite:///{folder / 'oltp.db'}"
    upgrade(url)
    db = Database(url)
    started = time.perf_counter()
    world = build_world(db, members=members, seed=11, months=months, loyalty=False, events=events)
    emit("warehouse.build", time.perf_counter() - started, "s", members=members, events=events)
    report = wsync.sync(db, folder / "warehouse.duckdb", settle_seconds=0)
    emit(
        "warehouse.sync",
        report.rows / report.seconds,
        "rows/s",
        rows=report.rows,
        seconds=round(report.seconds, 2),
        tables=report.copied,
    )
    db.dispose()
    return world.brands[0].id


def run(
    members: int,
    months: int,
    events: int,
    repeat: int = 5,
    workdir: Path | None = None,
    *,
    events_only: bool = False,
) -> None:
    """Build (or, with ``workdir`` holding an earlier build, reuse) the world, then time the analyses.

    ``workdir`` keeps the OLTP file and the warehouse after the run, so a 10M-event world is built once
    and the analyses can be timed again on it (``--workdir``)."""
    from huiyuan.analytics import engine, kpi, rfm
    from huiyuan.warehouse import connect

    folder = workdir or Path(tempfile.mkdtemp(prefix="huiyuan-bench-wh-"))
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "bench.json"
    path = folder / "warehouse.duckdb"
    try:
        if meta.exists() and path.exists():
            brand = int(json.loads(meta.read_text())["brand"])
            emit("warehouse.reused", 1, "world", workdir=str(folder))
        else:
            brand = _build(folder, members, months, events)
            meta.write_text(json.dumps({"brand": brand, "members": members, "events": events}))
        con = connect(path)
        if events_only:
            last = con.raw_sql("SELECT max(date_key) FROM fact_events").fetchone()[0]
            _events(con, brand, date(last // 10_000, last // 100 % 100, last % 100), repeat)
            con.disconnect()
            return
        orders = con.table("fact_orders")
        last = con.raw_sql("SELECT max(date_key) FROM fact_orders").fetchone()[0]
        end = date(last // 10_000, last // 100 % 100, last % 100)
        period = kpi.Period(start=end - timedelta(days=364), end=end)
        lo, hi = period.start.strftime("%Y%m%d"), period.end.strftime("%Y%m%d")

        def ours_breakdown() -> Any:
            return engine.query(str(path), kpi.breakdown, orders, brand, period, "channel")

        hand_breakdown_sql = f"""
            SELECT channel, sum(amount - coalesce(refunded, 0)) AS sales, count(*) AS orders,
                   sum(units) AS units,
                   count(DISTINCT coalesce(person_key, 'order:' || order_id)) AS buyers,
                   sum(list_amount) AS list_amount, sum(discount) AS discount
            FROM fact_orders
            WHERE brand_id = {brand} AND status <> 'cancelled' AND date_key BETWEEN {lo} AND {hi}
            GROUP BY channel ORDER BY sales DESC, channel"""

        def hand_breakdown() -> Any:
            return con.raw_sql(hand_breakdown_sql).fetchall()

        got = ours_breakdown()
        assert [(r["value"], r["orders"]) for r in got] == [(r[0], r[2]) for r in hand_breakdown()]
        orders_n = sum(r["orders"] for r in got)
        _compare("warehouse.kpi_breakdown", ours_breakdown, hand_breakdown, repeat, orders=orders_n)

        def ours_trend() -> Any:
            return engine.query(str(path), kpi.trend, orders, brand, period, "week")

        hand_trend_sql = f"""
            WITH t AS (
              SELECT date_trunc('week', make_date(date_key // 10000, (date_key // 100) % 100, date_key % 100))
                       AS bucket, *
              FROM fact_orders
              WHERE brand_id = {brand} AND status <> 'cancelled' AND date_key BETWEEN {lo} AND {hi}),
            agg AS (
              SELECT bucket, sum(amount - coalesce(refunded, 0)) AS sales, count(*) AS orders,
                     sum(units) AS units,
                     count(DISTINCT coalesce(person_key, 'order:' || order_id)) AS buyers,
                     sum(list_amount) AS list_amount, sum(discount) AS discount
              FROM t GROUP BY bucket),
            rep AS (
              SELECT bucket, count(*) AS member_buyers, count(*) FILTER (WHERE n >= 2) AS repeat_buyers
              FROM (SELECT bucket, member_id, count(*) AS n FROM t WHERE member_id IS NOT NULL GROUP BY 1, 2)
              GROUP BY bucket)
            SELECT agg.*, sales / nullif(buyers, 0) AS aov, sales / nullif(orders, 0) AS aspt,
                   units / nullif(orders, 0) AS upt, sales / nullif(units, 0) AS aspu,
                   discount / nullif(list_amount, 0) AS discount_rate,
                   repeat_buyers / nullif(member_buyers, 0) AS repurchase_rate
            FROM agg LEFT JOIN rep USING (bucket) ORDER BY bucket"""

        def hand_trend() -> Any:
            return con.raw_sql(hand_trend_sql).fetchall()

        assert [r["orders"] for r in ours_trend()] == [h[2] for h in hand_trend()]
        _compare("warehouse.kpi_trend", ours_trend, hand_trend, repeat, weeks=len(hand_trend()))

        request = rfm.RFMRequest(as_of=end)

        def ours_rfm() -> Any:
            return engine.query(str(path), rfm.rfm, orders, brand, request)

        hand_rfm_sql = f"""
            WITH per AS (
              SELECT member_id,
                     date_diff('day',
                               max(make_date(date_key // 10000, (date_key // 100) % 100, date_key % 100)),
                               DATE '{end.isoformat()}') AS recency,
                     count(*) AS frequency, sum(amount - coalesce(refunded, 0)) AS monetary
              FROM fact_orders
              WHERE brand_id = {brand} AND member_id IS NOT NULL AND status <> 'cancelled'
                AND date_key > {(end - timedelta(days=365)).strftime("%Y%m%d")} AND date_key <= {hi}
              GROUP BY member_id),
            scored AS (
            SELECT member_id, recency, frequency, monetary,
                   ceil(cume_dist() OVER (ORDER BY recency DESC) * 5 - 1e-9) AS r,
                   ceil(cume_dist() OVER (ORDER BY frequency) * 5 - 1e-9) AS f,
                   ceil(cume_dist() OVER (ORDER BY monetary) * 5 - 1e-9) AS m
            FROM per),
            flagged AS (SELECT *, r > avg(r) OVER () AS rh, f > avg(f) OVER () AS fh, m > avg(m) OVER () AS mh
                        FROM scored)
            SELECT *, CASE WHEN rh AND fh AND mh THEN 'important_value'
                           WHEN rh AND NOT fh AND mh THEN 'important_development'
                           WHEN NOT rh AND fh AND mh THEN 'important_retention'
                           WHEN NOT rh AND NOT fh AND mh THEN 'important_win_back'
                           WHEN rh AND fh THEN 'general_value'
                           WHEN rh THEN 'general_development'
                           WHEN fh THEN 'general_retention'
                           ELSE 'general_win_back' END AS segment
            FROM flagged ORDER BY member_id"""

        def hand_rfm() -> Any:
            return con.raw_sql(hand_rfm_sql).fetchall()

        assert [(r["member_id"], r["segment"]) for r in ours_rfm()] == [(h[0], h[-1]) for h in hand_rfm()]
        _compare("warehouse.rfm", ours_rfm, hand_rfm, repeat, members=len(hand_rfm()))
        _events(con, brand, end, repeat)
        con.disconnect()
    finally:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _events(con: Any, brand: int, end: date, repeat: int) -> None:
    """Funnel and retention over the demo's events (the tracking plan's own event names)."""
    from huiyuan.analytics import engine
    from huiyuan.analytics import funnel as fn
    from huiyuan.analytics import retention as rt

    events = con.table("fact_events")
    names = [
        r[0]
        for r in con.raw_sql(
            f"SELECT event FROM fact_events WHERE brand_id = {brand} AND event IS NOT NULL"
            " GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 2"
        ).fetchall()
    ]
    if len(names) < 2:
        return
    first, second = names
    span = con.raw_sql(
        f"SELECT min(date_key), max(date_key) FROM fact_events WHERE brand_id = {brand}"
    ).fetchone()
    lo_day = date(span[0] // 10_000, span[0] // 100 % 100, span[0] % 100)
    hi_day = date(span[1] // 10_000, span[1] // 100 % 100, span[1] % 100)
    request = fn.FunnelRequest(
        start=lo_day, end=hi_day, steps=[{"event": first}, {"event": second}], window_seconds=86_400
    )

    def ours_funnel() -> Any:
        return engine.query("bench", fn.funnel, events, brand, request)

    # The same result as ours: people entering, people converting, and the median and 90th
    # percentile seconds to convert of each person's chosen entry (the earliest converting one; each
    # entry continues at its earliest second-step event after it, inside the window).
    hand_funnel_sql = f"""
        WITH a AS (SELECT person_key AS p, ts AS t1, event_id AS id1 FROM fact_events
                   WHERE brand_id = {brand} AND event = '{first}'
                     AND date_key BETWEEN {lo_day.strftime("%Y%m%d")} AND {hi_day.strftime("%Y%m%d")}),
             b AS (SELECT person_key AS p, ts AS t2, event_id AS id2 FROM fact_events
                   WHERE brand_id = {brand} AND event = '{second}'),
             m AS (SELECT a.p, a.t1, a.id1, min(b.t2) AS t2 FROM a
                   JOIN b ON b.p = a.p AND b.t2 >= a.t1 AND b.t2 <= a.t1 + INTERVAL 1 DAY
                   WHERE b.t2 > a.t1 OR b.id2 > a.id1
                   GROUP BY ALL),
             c AS (SELECT p, arg_min(epoch(t2) - epoch(t1), (t1, id1)) AS secs FROM m GROUP BY p)
        SELECT (SELECT count(DISTINCT p) FROM a), count(*),
               quantile_cont(secs, 0.5), quantile_cont(secs, 0.9) FROM c"""
    # Only the two counts: what an analyst would write to check the conversion alone.
    counts_funnel_sql = f"""
        WITH a AS (SELECT person_key, ts, event_id FROM fact_events
                   WHERE brand_id = {brand} AND event = '{first}'
                     AND date_key BETWEEN {lo_day.strftime("%Y%m%d")} AND {hi_day.strftime("%Y%m%d")}),
             b AS (SELECT person_key, ts, event_id FROM fact_events
                   WHERE brand_id = {brand} AND event = '{second}'),
             m AS (SELECT DISTINCT a.person_key FROM a
                   JOIN b ON b.person_key = a.person_key AND b.ts >= a.ts AND b.ts <= a.ts + INTERVAL 1 DAY
                   WHERE b.ts > a.ts OR b.event_id > a.event_id)
        SELECT (SELECT count(DISTINCT person_key) FROM a), (SELECT count(*) FROM m)"""

    def hand_funnel() -> Any:
        return con.raw_sql(hand_funnel_sql).fetchall()

    def counts_funnel() -> Any:
        return con.raw_sql(counts_funnel_sql).fetchall()

    [row] = ours_funnel()
    [hand] = hand_funnel()
    assert (row["step_1"], row["step_2"]) == hand[:2] == counts_funnel()[0], (row, hand)
    assert abs(row["median_s_2"] - hand[2]) < 1e-6 and abs(row["p90_s_2"] - hand[3]) < 1e-6, (row, hand)
    counts_s = _median_seconds(counts_funnel, repeat)
    _compare(
        "warehouse.funnel",
        ours_funnel,
        hand_funnel,
        repeat,
        entered=row["step_1"],
        counts_only_ms=round(counts_s * 1000, 2),
    )

    retention = rt.RetentionRequest(
        start=lo_day,
        end=hi_day,
        as_of=hi_day,
        start_event={"event": first},
        return_event={"event": first},
        unit="week",
        periods=4,
    )

    def ours_retention() -> Any:
        return engine.query("bench", rt.retention, events, brand, retention)

    hand_retention_sql = f"""
        WITH d AS (SELECT person_key, event,
                     date_trunc('week', make_date(date_key // 10000, (date_key // 100) % 100, date_key % 100))
                       AS wk
                   FROM fact_events WHERE brand_id = {brand} AND date_key <= {hi_day.strftime("%Y%m%d")}
                     AND event = '{first}'),
             c AS (SELECT person_key, min(wk) AS cohort FROM d GROUP BY 1),
             r AS (SELECT DISTINCT person_key, wk FROM d)
        SELECT c.cohort, count(DISTINCT c.person_key) AS size,
               count(DISTINCT CASE WHEN date_diff('day', c.cohort, r.wk) // 7 = 1 THEN c.person_key END)
        FROM c LEFT JOIN r ON r.person_key = c.person_key
        GROUP BY 1 ORDER BY 1"""

    def hand_retention() -> Any:
        return con.raw_sql(hand_retention_sql).fetchall()

    ours_rows = ours_retention()
    assert [(r["size"], r["n1"]) for r in ours_rows] == [(h[1], h[2]) for h in hand_retention()]
    _compare("warehouse.retention", ours_retention, hand_retention, repeat, cohorts=len(ours_rows))


def _compare(
    name: str, ours: Callable[[], Any], hand: Callable[[], Any], repeat: int, **context: Any
) -> None:
    ours_s = _median_seconds(ours, repeat)
    hand_s = _median_seconds(hand, repeat)
    emit(
        name,
        ours_s * 1000,
        "ms",
        hand_written_ms=round(hand_s * 1000, 2),
        ratio=round(ours_s / hand_s, 2),
        **context,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warehouse", description=__doc__)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--workdir", type=Path, help="keep the built world here and reuse it when it is already there"
    )
    parser.add_argument(
        "--only", choices=("all", "events"), default="all", help="events: only the funnel and retention"
    )
    args = parser.parse_args(argv)
    run(args.members, args.months, args.events, args.repeat, args.workdir, events_only=args.only == "events")


if __name__ == "__main__":
    main()
