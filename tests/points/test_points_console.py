"""Console pages for points in both languages: point types and earn rules (with form errors shown in
the form), the member's loyalty section, and the liability dashboard with its chart data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from huiyuan.auth.deps import rate_limiter
from huiyuan.points.models import EarnRule, PointType
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.factories import enroll
from tests.points.test_points_api import add_type, grant

HX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    # Console logins are throttled in process memory; each test starts with empty buckets.
    rate_limiter().storage.reset()
    yield
    rate_limiter().storage.reset()


def _english(client) -> None:  # type: ignore[no-untyped-def]
    client.get("/console/lang?to=en&next=/console", follow_redirects=False)


def test_point_types_page_creates_and_shows_errors_in_the_form(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    page = client.get("/console/points/types")
    assert (
        page.status_code == 200 and "积分类型" in page.text and 'hx-post="/console/points/types"' in page.text
    )

    form = {
        "code": "points",
        "name": "会员积分",
        "kind": "spendable",
        "fair_value": "0.01",
        "max_pay_ratio": "0.5",
        "expiry_policy": '{"kind": "relative", "months": 0}',
    }
    bad = s.post("/console/points/types", form, headers=HX)
    assert bad.status_code == 422 and "<html" not in bad.text and 'id="point-type-form"' in bad.text
    assert (
        "expiry_policy.months" in bad.text
        and 'value="会员积分"' in bad.text
        and 'aria-invalid="true"' in bad.text
    )
    not_json = s.post("/console/points/types", {**form, "expiry_policy": "{months"}, headers=HX)
    assert not_json.status_code == 422 and "not valid JSON" in not_json.text
    ratio = s.post("/console/points/types", {**form, "max_pay_ratio": "2", "expiry_policy": ""}, headers=HX)
    assert ratio.status_code == 422 and "max_pay_ratio" in ratio.text

    ok = s.post(
        "/console/points/types", {**form, "expiry_policy": '{"kind": "relative", "months": 12}'}, headers=HX
    )
    assert ok.status_code == 200 and ok.headers["hx-redirect"] == "/console/points/types"
    dup = s.post("/console/points/types", {**form, "expiry_policy": ""}, follow_redirects=False)
    assert dup.status_code == 409 and "<html" in dup.text and "already in use" in dup.text
    listed = client.get("/console/points/types")
    assert "会员积分" in listed.text and "消费积分" in listed.text
    _english(client)
    english = client.get("/console/points/types")
    assert (
        "Point types" in english.text
        and "Spendable points" in english.text
        and "积分类型" not in english.text
    )
    with world.db.unit_of_work() as session:
        pt = session.scalars(select(PointType)).one()
        assert pt.expiry_policy["months"] == 12 and pt.brand_id == a.id


def test_earn_rules_page(client, world: World) -> None:
    a = world.brands[0]
    add_type(client, a.headers)
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    definition = {
        "trigger": {"kind": "order"},
        "point_type": "points",
        "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
    }
    bad = s.post(
        "/console/points/rules",
        {"code": "base", "name": "消费积分", "definition": json.dumps({**definition, "point_type": "coins"})},
        headers=HX,
    )
    assert (
        bad.status_code == 422 and "definition.point_type" in bad.text and 'id="earn-rule-form"' in bad.text
    )
    ok = s.post(
        "/console/points/rules", {"code": "base", "name": "消费积分", "definition": json.dumps(definition)}
    )
    assert ok.status_code == 200 and "消费积分" in ok.text and "生效中" in ok.text  # followed the redirect
    with world.db.unit_of_work() as session:
        rule_id = session.scalars(select(EarnRule.id)).one()
    paused = s.post(f"/console/points/rules/{rule_id}/status", {"status": "paused"})
    assert paused.status_code == 200 and "已暂停" in paused.text
    _english(client)
    english = client.get("/console/points/rules")
    assert "Earn rules" in english.text and "Paused" in english.text and "Resume" in english.text


def test_member_loyalty_section_and_page(client, world: World) -> None:
    a = world.brands[0]
    add_type(client, a.headers)
    m = enroll(client, a.headers, name="王小明")["id"]
    grant(client, a.headers, m, 800, "console-0001", funded_by="store")
    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    detail = client.get(f"/console/members/{m}")
    assert f'hx-get="/console/members/{m}/points"' in detail.text
    fragment = client.get(f"/console/members/{m}/points", headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.text and 'id="loyalty"' in fragment.text
    assert re.search(r"<td class=\"num\">800</td>", fragment.text) and "手工发放" in fragment.text
    assert "获得" in fragment.text and "补发" in fragment.text
    page = client.get(f"/console/members/{m}/points")
    assert "<html" in page.text and "王小明" in page.text
    _english(client)
    english = client.get(f"/console/members/{m}/points", headers=HX)
    assert "Loyalty points" in english.text and "Manual grant" in english.text and "Earned" in english.text
    assert "Expiring in 30 days" in english.text
    # read-only: no configuration forms
    assert 'id="point-type-form"' not in client.get("/console/points/types").text
    assert s.post("/console/points/types", {"code": "x"}).status_code == 403


def test_other_brand_member_loyalty_is_404(client, world: World) -> None:
    a, b = world.brands
    theirs = enroll(client, b.headers, name="乙会员")["id"]
    make_user(world.db, "alice", "brand_admin", a.id)
    signed_in(client, "alice")
    r = client.get(f"/console/members/{theirs}/points")
    assert r.status_code == 404 and "乙会员" not in r.text


def test_liability_dashboard_and_charts(client, world: World) -> None:
    a = world.brands[0]
    add_type(client, a.headers, fair_value="0.01")
    m = enroll(client, a.headers)["id"]
    grant(client, a.headers, m, 1000, "dash-0001")
    grant(client, a.headers, m, 500, "dash-0002", funded_by="store")
    make_user(world.db, "boss", "brand_admin", a.id)
    signed_in(client, "boss")
    page = client.get("/console/points/liability")
    assert page.status_code == 200 and "积分负债" in page.text and "¥15.00" in page.text
    assert 'data-chart-url="/console/points/liability.json"' in page.text and "echarts.min.js" in page.text
    chart = client.get("/console/points/liability.json").json()
    assert chart["months"] == ["积分"]
    assert {s["name"]: s["data"] for s in chart["series"]} == {"品牌": [10.0], "门店": [5.0]}
    outlook = client.get("/console/points/expiring.json").json()
    assert len(outlook["months"]) == 90 and len(outlook["series"]) == 1
    assert sum(outlook["series"][0]["data"]) == 1500 and outlook["series"][0]["name"] == "积分"
    _english(client)
    english = client.get("/console/points/liability")
    assert "Points liability" in english.text and "Outstanding points" in english.text
    assert client.get("/console/points/liability.json").json()["series"][0]["name"] == "Brand"
