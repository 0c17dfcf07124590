"""Console pages for tiers and paid plans in both languages: the tier programme and levels (create and
edit, with form errors shown in the form), paid plan categories and levels, the member's tier and paid
plan in the loyalty section, read-only roles and brand isolation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.auth.deps import rate_limiter
from huiyuan.paid.models import PlanCategory, PlanLevel
from huiyuan.tiers.models import TierLevel, TierProgram
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.factories import enroll

HX = {"HX-Request": "true"}
PROGRAM = {"window": {"kind": "rolling_months", "months": 12}, "settlement": {"mode": "realtime"}}
BASE = {"code": "base", "name_zh": "普卡", "name_en": "Classic", "rank": 0}
SILVER = {
    "code": "silver",
    "name_zh": "银卡",
    "name_en": "Silver",
    "rank": 1,
    "upgrade": {"basis": "growth", "min": 1000},
    "validity": {"kind": "months", "months": 12},
    "points_multiplier": "1.5",
}
PROGRAM_FORM = {"window_kind": "rolling_months", "window_months": "12", "settlement_mode": "realtime"}
SILVER_FORM = {
    "code": "silver",
    "name_zh": "银卡",
    "name_en": "Silver",
    "rank": "1",
    "upgrade": '{"any": [{"basis": "growth", "min": 1000}, {"basis": "single_order", "min": "800.00"}]}',
    "validity": '{"kind": "months", "months": 12}',
    "points_multiplier": "1.5",
    "upgrade_gifts": '[{"kind": "points", "point_type": "points", "amount": 200}]',
}


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    rate_limiter().storage.reset()
    yield
    rate_limiter().storage.reset()


def _text(html: str) -> str:
    """What a reader sees: tags removed, white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _english(client: Any) -> None:
    client.get("/console/lang?to=en&next=/console", follow_redirects=False)


def _api(client: Any, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _ladder(client: Any, headers: dict[str, str]) -> dict[str, int]:
    _api(client, "PUT", "/api/v1/tiers/program", headers, PROGRAM)
    return {
        lv["code"]: _api(client, "POST", "/api/v1/tiers/levels", headers, lv)["id"] for lv in (BASE, SILVER)
    }


def _plan(client: Any, headers: dict[str, str], code: str = "family") -> int:
    category = _api(
        client,
        "POST",
        "/api/v1/paid/categories",
        headers,
        {"code": code, "name": "家庭会员", "customer_group": "family"},
    )
    level = {
        "category_id": category["id"],
        "code": f"{code}-gold",
        "name": "家庭金卡",
        "rank": 1,
        "price": "199.00",
        "validity": {"unit": "month", "count": 12},
    }
    return int(_api(client, "POST", "/api/v1/paid/levels", headers, level)["id"])


def test_tiers_page_configures_the_programme_and_levels(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    page = client.get("/console/tiers")
    assert page.status_code == 200 and "尚未配置等级体系" in page.text
    assert 'id="tier-program-form"' in page.text and 'id="tier-level-form"' in page.text
    assert 'id="tier-distribution-chart"' in page.text

    # the programme: an error shown in its form, then saved
    bad = s.post("/console/tiers/program", {**PROGRAM_FORM, "window_months": "0"}, headers=HX)
    assert bad.status_code == 422 and "<html" not in bad.text and 'id="tier-program-form"' in bad.text
    assert "window.rolling_months.months" in bad.text and 'aria-invalid="true"' in bad.text
    ok = s.post("/console/tiers/program", {**PROGRAM_FORM, "grace_days": "30"}, headers=HX)
    assert ok.status_code == 200 and ok.headers["hx-redirect"] == "/console/tiers"

    # a base level may not have an upgrade condition (the service's rule across levels)
    base = {"code": "base", "name_zh": "普卡", "name_en": "Classic", "rank": "0"}
    refused = s.post(
        "/console/tiers/levels", {**base, "upgrade": '{"basis": "growth", "min": 1}'}, headers=HX
    )
    assert (
        refused.status_code == 422 and 'id="tier-level-form"' in refused.text and "<html" not in refused.text
    )
    assert "the base level has no upgrade condition" in refused.text and 'value="普卡"' in refused.text
    assert s.post("/console/tiers/levels", base, headers=HX).headers["hx-redirect"] == "/console/tiers"

    # malformed JSON and an unknown basis, shown in the form with the fields marked
    not_json = s.post("/console/tiers/levels", {**SILVER_FORM, "upgrade_gifts": "[{"}, headers=HX)
    assert not_json.status_code == 422 and "upgrade_gifts: not valid JSON" in not_json.text
    assert '<textarea name="upgrade_gifts" class="mono" rows="3"' in not_json.text
    basis = s.post(
        "/console/tiers/levels", {**SILVER_FORM, "retention": '{"basis": "age", "min": 1}'}, headers=HX
    )
    assert basis.status_code == 422 and "retention." in basis.text and "银卡" in basis.text
    gift = s.post(
        "/console/tiers/levels", {**SILVER_FORM, "upgrade_gifts": '[{"kind": "voucher"}]'}, headers=HX
    )
    assert gift.status_code == 422 and "upgrade_gifts.0.kind" in gift.text
    created = s.post("/console/tiers/levels", SILVER_FORM, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/console/tiers"

    listed = client.get("/console/tiers")
    table = _text(listed.text.split('id="tier-levels"')[1].split("</table>")[0])
    assert "普卡" in table and "银卡" in table and "成长值 ≥ 1000" in table and "单笔消费 ≥ 800.00" in table
    assert "12 个月" in table and "200 积分（points）" in table and "×1.5" in table
    assert "最近 12 个月" in listed.text and "30" in listed.text
    with world.db.unit_of_work() as session:
        program = session.scalars(select(TierProgram)).one()
        silver = session.scalars(select(TierLevel).where(TierLevel.code == "silver")).one()
        assert program.grace_days == 30 and program.brand_id == a.id
        assert silver.upgrade_gifts == [{"kind": "points", "point_type": "points", "amount": 200}]
        assert silver.points_multiplier == Decimal("1.5") and silver.brand_id == a.id

    # edit: the form is filled in; errors stay in it; a valid change lands
    edit = client.get(f"/console/tiers/levels/{silver.id}")
    assert edit.status_code == 200 and 'action="/console/tiers/levels/' in edit.text
    assert (
        re.search(r'name="code" value="silver"[^>]* readonly', edit.text)
        and "&#34;months&#34;: 12" in edit.text
    )
    form = {k: v for k, v in SILVER_FORM.items() if k != "code"}
    rank0 = s.post(f"/console/tiers/levels/{silver.id}", {**form, "rank": "0"}, headers=HX)
    assert rank0.status_code == 422 and "rank 0 is the base level" in rank0.text
    assert 'id="tier-level-form"' in rank0.text and "<html" not in rank0.text
    changed = s.post(f"/console/tiers/levels/{silver.id}", {**form, "points_multiplier": "2"}, headers=HX)
    assert changed.status_code == 200 and changed.headers["hx-redirect"] == "/console/tiers"
    with world.db.unit_of_work() as session:
        assert session.get(TierLevel, silver.id).points_multiplier == Decimal("2")  # type: ignore[union-attr]

    _english(client)
    english = client.get("/console/tiers")
    assert english.status_code == 200 and "Tier programme" in english.text and "Silver" in english.text
    assert "Growth ≥ 1000" in english.text and "12 months" in english.text and "会员等级" not in english.text
    english_level = client.get(f"/console/tiers/levels/{silver.id}")
    assert english_level.status_code == 200 and "Edit level" in english_level.text


def test_tiers_page_is_read_only_without_tiers_write(client, world: World) -> None:
    a = world.brands[0]
    ids = _ladder(client, a.headers)
    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    page = client.get("/console/tiers")
    assert page.status_code == 200 and "银卡" in page.text
    assert 'id="tier-level-form"' not in page.text and 'id="tier-program-form"' not in page.text
    level = client.get(f"/console/tiers/levels/{ids['silver']}")
    assert level.status_code == 200 and "银卡" in level.text and 'id="tier-level-form"' not in level.text
    assert s.post("/console/tiers/levels", {"code": "x"}).status_code == 403
    assert s.post("/console/tiers/program", PROGRAM_FORM).status_code == 403


def test_paid_page_creates_categories_and_levels(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    page = client.get("/console/paid")
    assert page.status_code == 200 and "付费会员类别" in page.text and 'href="/console/paid"' in page.text
    assert 'id="paid-category-form"' in page.text and "请先新建一个类别" in page.text

    category = {"code": "family", "name": "家庭会员", "customer_group": "family"}
    bad = s.post("/console/paid/categories", {**category, "code": "no spaces"}, headers=HX)
    assert bad.status_code == 422 and 'id="paid-category-form"' in bad.text and "<html" not in bad.text
    assert "code:" in bad.text and 'aria-invalid="true"' in bad.text and 'value="家庭会员"' in bad.text
    ok = s.post("/console/paid/categories", category, headers=HX)
    assert ok.status_code == 200 and ok.headers["hx-redirect"] == "/console/paid"
    dup = s.post("/console/paid/categories", category, follow_redirects=False)
    assert dup.status_code == 409 and "<html" in dup.text and "already in use" in dup.text
    with world.db.unit_of_work() as session:
        family = session.scalars(select(PlanCategory)).one()
        assert family.brand_id == a.id

    level = {
        "category_id": str(family.id),
        "code": "family-gold",
        "name": "家庭金卡",
        "rank": "1",
        "price": "199.00",
        "validity_unit": "month",
        "validity_count": "12",
        "cooling_off_days": "7",
        "points_multiplier": "1.5",
        "one_time": '[{"kind": "points", "point_type": "points", "amount": 500}]',
        "periodic_period": "month",
        "periodic": '[{"kind": "points", "point_type": "points", "amount": 50}]',
    }
    invalid = s.post("/console/paid/levels", {**level, "price": "-1", "validity_count": "0"}, headers=HX)
    assert (
        invalid.status_code == 422 and 'id="paid-level-form"' in invalid.text and "<html" not in invalid.text
    )
    assert "price:" in invalid.text and "validity.count" in invalid.text
    assert re.search(r'<input name="price" value="-1"[^>]* aria-invalid="true">', invalid.text)
    benefit = s.post("/console/paid/levels", {**level, "periodic": '[{"kind": "points"}]'}, headers=HX)
    assert benefit.status_code == 422 and "benefits.periodic.benefits.0" in benefit.text
    assert re.search(r'<textarea name="periodic"[^>]* aria-invalid="true">\[', benefit.text)
    created = s.post("/console/paid/levels", level, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/console/paid"
    rank_taken = s.post("/console/paid/levels", {**level, "code": "other"}, headers=HX)
    assert rank_taken.status_code == 409 and "already used in this category" in rank_taken.text

    listed = client.get("/console/paid")
    table = _text(listed.text.split('id="paid-levels"')[1].split("</table>")[0])
    assert "家庭金卡" in table and "¥199.00" in table and "12 个月" in table and "×1.5" in table
    assert "500 积分（points）" in table and "每月: 50 积分（points）" in table and "在售" in table
    with world.db.unit_of_work() as session:
        gold = session.scalars(select(PlanLevel)).one()
        assert gold.periodic_benefits == [{"kind": "points", "point_type": "points", "amount": 50}]
    detail = client.get(f"/console/paid/levels/{gold.id}")
    assert detail.status_code == 200 and "家庭金卡" in detail.text and "¥199.00" in detail.text

    _english(client)
    english = client.get("/console/paid")
    assert "Plan categories" in english.text and "12 months" in english.text and "On sale" in english.text
    assert "Monthly: 50 points (points)" in _text(english.text) and "付费会员类别" not in english.text
    english_detail = client.get(f"/console/paid/levels/{gold.id}")
    assert "Cooling-off days" in english_detail.text and "Paid plans" in english_detail.text


def test_platform_user_chooses_a_brand_first(client, world: World) -> None:
    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    for url in ("/console/tiers", "/console/paid"):
        page = client.get(url)
        assert page.status_code == 200 and "请先在顶部选择一个品牌" in page.text, url
        assert 'id="tier-level-form"' not in page.text and 'id="paid-level-form"' not in page.text


def test_paid_page_is_read_only_without_paid_configure(client, world: World) -> None:
    a = world.brands[0]
    _plan(client, a.headers)
    make_user(world.db, "op", "operator", a.id)
    s = signed_in(client, "op")
    page = client.get("/console/paid")
    assert page.status_code == 200 and "家庭金卡" in page.text
    assert 'id="paid-category-form"' not in page.text and 'id="paid-level-form"' not in page.text
    assert s.post("/console/paid/categories", {"code": "x"}).status_code == 403
    assert s.post("/console/paid/levels", {"code": "x"}).status_code == 403


def test_member_loyalty_section_shows_tier_changes_and_paid_plan(client, world: World) -> None:
    a = world.brands[0]
    _ladder(client, a.headers)
    gold = _plan(client, a.headers)
    m = enroll(client, a.headers, name="王小明")["id"]
    override = {"level_code": "silver", "reason": "VIP 客诉补偿"}
    _api(client, "POST", f"/api/v1/members/{m}/tier/override", a.headers, override)
    sub = _api(
        client,
        "POST",
        f"/api/v1/members/{m}/paid/buy",
        a.headers,
        {"level_id": gold, "payment_reference": "WX-0001"},
    )["subscription"]
    make_user(world.db, "ana", "analyst", a.id)
    signed_in(client, "ana")

    section = client.get(f"/console/members/{m}/points", headers=HX)
    assert section.status_code == 200 and 'id="loyalty"' in section.text
    assert f'hx-get="/console/members/{m}/tier"' in section.text
    assert f'hx-get="/console/members/{m}/paid"' in section.text

    tier = client.get(f"/console/members/{m}/tier", headers=HX)
    assert tier.status_code == 200 and "<html" not in tier.text and 'id="loyalty-tier"' in tier.text
    assert "银卡" in tier.text and "已是最高等级" in tier.text and "人工调整" in tier.text
    changes = tier.text.split('id="tier-changes"')[1].split("</table>")[0]
    assert "普卡" in changes and "银卡" in changes and "VIP 客诉补偿" in changes
    paid = client.get(f"/console/members/{m}/paid", headers=HX)
    assert paid.status_code == 200 and 'id="loyalty-paid"' in paid.text and "<html" not in paid.text
    assert "家庭金卡" in paid.text and "家庭会员" in paid.text and "到期时间" in paid.text
    assert sub["ends_at"][:4] in paid.text
    assert "<html" in client.get(f"/console/members/{m}/tier").text  # readable without JavaScript
    assert "<html" in client.get(f"/console/members/{m}/paid").text

    _english(client)
    english_tier = client.get(f"/console/members/{m}/tier", headers=HX)
    assert (
        "Member tier" in english_tier.text
        and "Silver" in english_tier.text
        and "Override" in english_tier.text
    )
    assert "Already at the top level." in english_tier.text
    english_paid = client.get(f"/console/members/{m}/paid", headers=HX)
    assert "Current plan" in english_paid.text and "Ends at" in english_paid.text


def test_member_tier_progress_and_members_without_a_programme_or_plan(client, world: World) -> None:
    a, b = world.brands
    _ladder(client, a.headers)
    m = enroll(client, a.headers)["id"]
    theirs = enroll(client, b.headers, name="乙会员")["id"]
    make_user(world.db, "ana", "analyst", a.id)
    signed_in(client, "ana")
    tier = client.get(f"/console/members/{m}/tier", headers=HX)
    assert tier.status_code == 200 and "普卡" in tier.text and "下一等级" in tier.text
    assert "成长值: <b>0</b> / 1000" in tier.text and "<progress" in tier.text and "未达成" in tier.text
    assert "尚未配置" not in tier.text
    paid = client.get(f"/console/members/{m}/paid", headers=HX)
    assert paid.status_code == 200 and "未开通付费会员" in paid.text

    make_user(world.db, "bob", "analyst", b.id)
    signed_in(client, "bob")
    no_programme = client.get(f"/console/members/{theirs}/tier", headers=HX)
    assert no_programme.status_code == 200 and "尚未配置等级体系" in no_programme.text


def test_brand_user_cannot_see_another_brands_levels_or_members(client, world: World) -> None:
    a, b = world.brands
    theirs = _ladder(client, b.headers)
    their_plan = _plan(client, b.headers, code="drivers")
    their_member = enroll(client, b.headers, name="乙会员")["id"]
    _ladder(client, a.headers)
    make_user(world.db, "alice", "brand_admin", a.id)
    s = signed_in(client, "alice")
    for url in (
        f"/console/tiers/levels/{theirs['silver']}",
        f"/console/paid/levels/{their_plan}",
        f"/console/members/{their_member}/tier",
        f"/console/members/{their_member}/paid",
    ):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "银卡" not in r.text and "家庭金卡" not in r.text and "乙会员" not in r.text
    form = {"name_zh": "偷改", "name_en": "Hijack", "rank": "1"}
    assert s.post(f"/console/tiers/levels/{theirs['silver']}", form).status_code == 404
    assert "家庭金卡" not in client.get("/console/paid").text
    with world.db.unit_of_work() as session:
        names = {lv.name_zh for lv in session.scalars(select(TierLevel))}
        assert "偷改" not in names


def test_catalog_labels_of_the_loyalty_pages_are_sorted_and_complete() -> None:
    from huiyuan.console import i18n

    for lang in i18n.LANGUAGES:
        raw = (i18n.LOCALES_DIR / f"{lang}.json").read_text(encoding="utf-8")
        keys = list(json.loads(raw))
        assert keys == sorted(keys)
        assert {k for k in keys if k.startswith(("tiers.", "paid."))} >= {
            "tiers.member_tier",
            "paid.member_plan",
        }
