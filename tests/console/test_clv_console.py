"""The predictive CLV page: asks for a sync first; says when a brand has too little history; with
the CDNOW sample as the brand's orders shows the published parameters, the totals, the P(alive)
chart and the members ranked with links, in Chinese and English, and a CSV of every member; another
brand's members never show."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from huiyuan.settings import get_settings
from huiyuan.warehouse import schema
from tests.analytics.test_member_clv import _cdnow, _members_table, _orders_table
from tests.conftest import World
from tests.console.conftest import make_user, signed_in

PAGE = "/console/analytics/clv?calibration_end=1997-09-30&horizon_days=365&limit=10"


@pytest.fixture
def analyst(client: Any, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    make_user(world.db, "ann", "analyst", world.brands[0].id, locale="en")
    make_user(world.db, "bob", "analyst", world.brands[1].id)
    signed_in(client, "ana")
    return path


def _fill(path: Path, brand: int, other: int) -> None:
    rows = _cdnow(brand)
    # Brand ``other`` has one member with a number that must never show on brand ``brand``'s page.
    con = duckdb.connect(str(path))
    schema.create_all(con)
    con.register("o", _orders_table(rows))
    con.execute("INSERT INTO fact_orders BY NAME SELECT * FROM o")
    con.register("m", _members_table({r["member_id"] for r in rows}, brand))
    con.execute("INSERT INTO dim_member BY NAME SELECT * FROM m")
    con.execute(
        "INSERT INTO dim_member (brand_id, member_id, member_number) VALUES (?, 999999, 'OTHER-BRAND-1')",
        [other],
    )
    con.close()


def test_clv_page(client: Any, world: World, analyst: Path) -> None:
    blocked = client.get(PAGE)
    assert blocked.status_code == 200 and 'id="analysis-blocked"' in blocked.text

    _fill(analyst, world.brands[0].id, world.brands[1].id)
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    html = page.text
    assert "预测客户价值" in html and "存活概率分布" in html
    assert "r = 0.24" in html and "α = 4.41" in html and "q = 3.7" in html
    figures = dict(
        re.findall(r'<tr data-figure="([a-z_]+)"><th>[^<]*</th><td class="num value">([^<]*)</td>', html)
    )
    assert figures["members"] == "2,357"
    option = json.loads(re.search(r'id="clv-chart-option">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert sum(option["series"][0]["data"]) == 2357
    ranked = re.findall(r'<a href="/console/members/(\d+)">CD\d{5}</a>', html)
    assert len(ranked) == 10
    assert "OTHER-BRAND-1" not in html

    table = list(csv.reader(io.StringIO(client.get(PAGE.replace("clv?", "clv.csv?")).text.lstrip("\ufeff"))))
    assert table[1][:2] == ["member_number", "member_id"] and len([r for r in table[2:] if r]) == 2357

    bad = client.get("/console/analytics/clv?horizon_days=0")
    assert bad.status_code == 422 and 'id="analysis-errors"' in bad.text

    signed_in(client, "ann")
    assert "Predictive CLV" in client.get(PAGE).text

    signed_in(client, "bob")
    thin = client.get("/console/analytics/clv")
    assert thin.status_code == 200 and 'id="analysis-prompt"' in thin.text and "CD0" not in thin.text
