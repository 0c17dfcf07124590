"""Predictive CLV per member through the warehouse: the CDNOW sample loaded as a brand's orders gives
the published BG/NBD and Gamma-Gamma estimates (Fader, Hardie and Lee 2005) within 1 % on DuckDB and
on PostgreSQL, with the same per-member predictions; cancelled, fully refunded and other brands'
orders do not count; the API answers JSON and CSV for the caller's brand only."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from huiyuan.analytics import clv, engine, member_clv
from huiyuan.kit.db import Database
from huiyuan.settings import get_settings
from huiyuan.warehouse import schema
from huiyuan.warehouse import sync as wsync
from tests.analytics.backends import both
from tests.factories import enroll
from tests.orders.helpers import order_body

SAMPLE = Path(__file__).parent / "data" / "CDNOW_sample.txt"
END = date(1997, 9, 30)
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}


def _cdnow(brand_id: int) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(SAMPLE.read_text().splitlines(), start=1):
        _master, customer, day, _quantity, amount = line.split()
        rows.append(
            {
                "brand_id": brand_id,
                "order_id": i,
                "member_id": int(customer),
                "status": "paid",
                "date_key": int(day),
                "amount": Decimal(amount),
                "refunded": Decimal("0"),
            }
        )
    return rows


def _noise(start_id: int) -> list[dict[str, Any]]:
    """Orders that must not count: another brand's buyer 1 on a new day, a cancelled order and a fully
    refunded one of brand 1's customer 1 on new days, and an anonymous order."""
    base = {"status": "paid", "refunded": Decimal("0"), "amount": Decimal("50.00")}
    return [
        {**base, "brand_id": 2, "order_id": start_id, "member_id": 1, "date_key": 19970301},
        {
            **base,
            "brand_id": 1,
            "order_id": start_id + 1,
            "member_id": 1,
            "date_key": 19970302,
            "status": "cancelled",
        },
        {
            **base,
            "brand_id": 1,
            "order_id": start_id + 2,
            "member_id": 1,
            "date_key": 19970303,
            "refunded": Decimal("50.00"),
        },
        {**base, "brand_id": 1, "order_id": start_id + 3, "member_id": None, "date_key": 19970304},
    ]


def _orders_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("brand_id", pa.int64()),
                ("order_id", pa.int64()),
                ("member_id", pa.int64()),
                ("status", pa.string()),
                ("date_key", pa.int32()),
                ("amount", pa.decimal128(18, 2)),
                ("refunded", pa.decimal128(18, 2)),
            ]
        ),
    )


def _members_table(ids: set[int], brand_id: int) -> pa.Table:
    return pa.Table.from_pylist(
        [{"brand_id": brand_id, "member_id": i, "member_number": f"CD{i:05d}"} for i in sorted(ids)],
        schema=pa.schema(
            [("brand_id", pa.int64()), ("member_id", pa.int64()), ("member_number", pa.string())]
        ),
    )


def _fetch(fn: Any, *args: Any) -> list[dict[str, Any]]:
    return engine.records(fn(*args))


def test_cdnow_through_the_warehouse_on_duckdb_and_postgres(pg_database: str) -> None:
    rows = _cdnow(1)
    orders = _orders_table(rows + _noise(len(rows) + 1))
    members = _members_table({r["member_id"] for r in rows}, 1)
    request = member_clv.MemberCLVRequest(calibration_end=END, horizon_days=365)
    results = {}
    with both({"fact_orders": orders, "dim_member": members}, pg_database) as backends:
        for name, t in backends.items():
            results[name] = member_clv.run(t["fact_orders"], t["dim_member"], 1, request, _fetch)

    for prediction, numbers in results.values():
        params = prediction.parameters()
        for key, published in PUBLISHED.items():
            assert params[key] == pytest.approx(published, rel=0.01), key
        assert (params["customers"], params["repeat_buyers"]) == (2357, 946)
        # Customer 1: x = 2, t_x = 30.43, T = 38.86 (the paper's worked customer), none of the noise.
        top = {r["member_id"]: r for r in prediction.rows("clv")}
        assert (top[1]["x"], top[1]["t_x"], top[1]["T"]) == (2, pytest.approx(30.43, abs=0.005), 38.8571)
        assert numbers[1] == "CD00001"

    duck, pg = (results[n][0] for n in ("duckdb", "postgres"))
    assert duck.member_ids == pg.member_ids
    np.testing.assert_allclose(duck.value, pg.value, rtol=1e-6)

    # The same numbers as fitting the raw file directly.
    summary = clv.summarise(
        (
            (str(r["member_id"]), datetime.strptime(str(r["date_key"]), "%Y%m%d").date(), float(r["amount"]))
            for r in rows
        ),
        END,
    )
    bgnbd = clv.fit_bgnbd(summary)
    direct = bgnbd.expected_purchases(365 / 7, summary.x, summary.t_x, summary.T)
    np.testing.assert_allclose(duck.expected_purchases, direct, rtol=1e-4)
    np.testing.assert_allclose(duck.p_alive, bgnbd.p_alive(summary.x, summary.t_x, summary.T), rtol=1e-4)


def test_rows_totals_and_ordering() -> None:
    rows = _cdnow(1)
    con = duckdb.connect()
    import ibis

    backend = ibis.duckdb.from_connection(con)
    backend.create_table("fact_orders", _orders_table(rows))
    backend.create_table("dim_member", _members_table({r["member_id"] for r in rows}, 1))
    # No calibration end: the last order day (1998-06-30) is used.
    prediction, _ = member_clv.run(
        backend.table("fact_orders"),
        backend.table("dim_member"),
        1,
        member_clv.MemberCLVRequest(horizon_days=90),
        _fetch,
    )
    assert prediction.calibration_end == date(1998, 6, 30)
    totals = prediction.totals()
    assert totals["members"] == 2357
    assert sum(b["members"] for b in totals["p_alive_buckets"]) == 2357
    assert totals["clv"] == pytest.approx(float(prediction.value.sum()))
    by_alive = prediction.rows("p_alive", 50)
    assert len(by_alive) == 50
    assert [r["p_alive"] for r in by_alive] == sorted((r["p_alive"] for r in by_alive), reverse=True)
    # One-time buyers are alive by the model's definition (no repeat purchase to have dropped out after).
    assert all(r["p_alive"] == 1.0 for r in prediction.rows("clv") if r["x"] == 0)
    with pytest.raises(clv.CLVInputError):
        member_clv.run(
            backend.table("fact_orders"),
            backend.table("dim_member"),
            2,
            member_clv.MemberCLVRequest(),
            _fetch,
        )


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_member_clv_api(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = world.brands
    path = tmp_path / "clv.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    body = {"calibration_end": "1997-09-30", "horizon_days": 365, "limit": 5}
    missing = client.post("/api/v1/analytics/clv", json=body, headers=alpha.headers)
    assert missing.status_code == 409 and missing.json()["code"] == "warehouse-not-ready"

    # A real sync of one member's one order: too little history to fit, said as a field error.
    member = enroll(client, alpha.headers)
    assert (
        client.post(
            "/api/v1/orders", json=order_body("A-1", member_id=member["id"]), headers=alpha.headers
        ).status_code
        == 201
    )
    wsync.sync(db, path, settle_seconds=0)
    thin = client.post("/api/v1/analytics/clv", json={"horizon_days": 30}, headers=alpha.headers)
    assert thin.status_code == 422, thin.text
    assert thin.headers["content-type"].startswith("application/problem+json")
    assert thin.json()["errors"][0]["code"] == "not_enough_history"

    # The CDNOW sample as alpha's orders, written straight into the warehouse file.
    rows = _cdnow(alpha.id)
    con = duckdb.connect(str(path))
    schema.create_all(con)
    con.execute("DELETE FROM fact_orders")
    con.execute("DELETE FROM dim_member")
    con.register("o", _orders_table(rows))
    con.execute("INSERT INTO fact_orders BY NAME SELECT * FROM o")
    con.register("m", _members_table({r["member_id"] for r in rows}, alpha.id))
    con.execute("INSERT INTO dim_member BY NAME SELECT * FROM m")
    con.close()

    got = client.post("/api/v1/analytics/clv", json=body, headers=alpha.headers)
    assert got.status_code == 200, got.text
    out = got.json()
    assert out["calibration_end"] == "1997-09-30" and out["totals"]["members"] == 2357
    assert out["parameters"]["r"] == pytest.approx(PUBLISHED["r"], rel=0.01)
    assert len(out["items"]) == 5
    assert [i["clv"] for i in out["items"]] == sorted((i["clv"] for i in out["items"]), reverse=True)
    assert all(i["member_number"].startswith("CD") for i in out["items"])

    table = _csv(client.post("/api/v1/analytics/clv?format=csv", json=body, headers=alpha.headers).text)
    assert table[0] == ["CLV"] and table[1][:3] == ["member_number", "member_id", "x"]
    assert len([row for row in table[2:] if row]) == 2357

    # Beta has no order in the warehouse: nothing of alpha's leaks into its answer.
    other = client.post("/api/v1/analytics/clv", json=body, headers=beta.headers)
    assert other.status_code == 422 and "CD" not in other.text

    bad = client.post("/api/v1/analytics/clv", json={"horizon_days": 0}, headers=alpha.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("horizon_days")
