"""Console pages of coupons in both languages: templates (create with field errors, detail, status,
restock, code import, push issue and its run report), coupon lookup and void, settlement with its
CSV/XLSX downloads and chart data, figures, read-only roles and brand isolation; and, in headless
Chromium, the templates page and the settlement chart.

With ``HUIYUAN_CONSOLE_SCREENSHOTS=<dir>`` the browser test also saves the settlement page and a
template's page (for the docs) into that folder.
"""

from __future__ import annotations

import io
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from huiyuan.coupons.models import Coupon, CouponTemplate
from huiyuan.tenancy.models import Store
from tests.conftest import World
from tests.console.conftest import PASSWORD, LiveConsole, make_user, signed_in
from tests.factories import enroll

HX = {"HX-Request": "true"}
TEMPLATES = "/api/v1/coupons/templates"
RULES = (
    '{"discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"}, "stacking": "stackable",'
    ' "cost_sharing": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],'
    ' "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"}}'
)
FORM = {
    "code": "SPRING-50",
    "name": "满300减50",
    "status": "active",
    "code_source": "generated",
    "stock_total": "100",
    "budget_total": "5000.00",
    "limit_per_member": "1",
    "claimable": "1",
    "claim_from": "2026-03-01T10:00",
    "claim_to": "2026-03-08T00:00",
    "return_on_refund": "1",
    "rules": RULES,
}


def _text(html: str) -> str:
    """What a reader sees: tags removed, white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _api(client: Any, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _redeemed_coupon(client: Any, world: World) -> dict[str, Any]:
    """Brand A: a 满300减50 template (brand 70 %, store 30 %), a member with two of its coupons, one of
    them redeemed in the brand's first store."""
    h = world.brands[0].headers
    body = {"code": "SPRING-50", "name": "满300减50", "status": "active", "rules": json.loads(RULES)}
    template = _api(client, "POST", TEMPLATES, h, body)
    member = enroll(client, h, name="王小明")
    coupons = [
        _api(
            client,
            "POST",
            "/api/v1/coupons/issue",
            h,
            {"template_id": template["id"], "member_id": member["id"], "idempotency_key": f"issue-{n:04d}"},
        )
        for n in range(2)
    ]
    with world.db.unit_of_work() as s:
        store = s.scalars(select(Store).where(Store.brand_id == world.brands[0].id)).first()
        assert store is not None
        store_id, store_name = store.id, store.name
    cart = {
        "lines": [{"line_id": "1", "sku": "COAT", "unit_price": "350.00", "quantity": 1}],
        "scene": "in_store",
        "store_id": store_id,
    }
    lock = _api(
        client,
        "POST",
        "/api/v1/coupons/locks",
        h,
        {
            "member_id": member["id"],
            "order_ref": "SO-1",
            "cart": cart,
            "coupon_ids": [coupons[0]["id"]],
            "idempotency_key": "lock-0001",
        },
    )
    _api(client, "POST", f"/api/v1/coupons/locks/{lock['id']}/redeem", h, {"payment_reference": "PAY-1"})
    return {
        "template": template,
        "member": member,
        "redeemed": coupons[0],
        "available": coupons[1],
        "store": store_name,
    }


def test_templates_are_created_restocked_imported_and_pushed(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    page = client.get("/console/coupons")
    assert page.status_code == 200 and 'href="/console/coupons"' in page.text
    assert 'id="coupon-template-form"' in page.text and "&#34;threshold&#34;" in page.text  # example rules

    # Validation errors stay in the form, on the fields at fault.
    not_json = s.post("/console/coupons/templates", {**FORM, "rules": "{"}, headers=HX)
    assert (
        not_json.status_code == 422
        and "<html" not in not_json.text
        and "rules: not valid JSON" in not_json.text
    )
    shares = RULES.replace('"percent": "30"', '"percent": "20"')
    bad = s.post("/console/coupons/templates", {**FORM, "rules": shares, "stock_total": "0"}, headers=HX)
    assert bad.status_code == 422 and 'id="coupon-template-form"' in bad.text
    assert "rules.cost_sharing: the percents add up to 90, not 100" in bad.text and "stock_total:" in bad.text
    assert re.search(r'<textarea name="rules"[^>]* aria-invalid="true">', bad.text)
    assert re.search(r'<input name="stock_total" value="0"[^>]* aria-invalid="true">', bad.text)
    assert 'value="满300减50"' in bad.text
    percent = (
        '{"discount": {"kind": "percent_off", "percent": "15"}, "validity": {"kind": "relative", "days": 7}}'
    )
    no_cap = s.post("/console/coupons/templates", {**FORM, "rules": percent}, headers=HX)
    assert no_cap.status_code == 422 and "budget_total: the discount has no upper bound" in no_cap.text
    window = s.post("/console/coupons/templates", {**FORM, "claim_to": "2026-02-01T00:00"}, headers=HX)
    assert window.status_code == 422 and "claim_to: must be after claim_from" in window.text

    created = s.post("/console/coupons/templates", FORM, headers=HX)
    assert created.status_code == 200 and created.headers["hx-redirect"].startswith(
        "/console/coupons/templates/"
    )
    taken = s.post("/console/coupons/templates", FORM, headers=HX)
    assert taken.status_code == 409 and "code: taken" in taken.text
    with world.db.unit_of_work() as session:
        tpl = session.scalars(select(CouponTemplate).where(CouponTemplate.code == "SPRING-50")).one()
        assert tpl.brand_id == a.id and tpl.limit_per_member == 1 and tpl.stock_available == 100
        assert tpl.claim_from == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # typed in Asia/Shanghai
    url = f"/console/coupons/templates/{tpl.id}"
    listed = _text(client.get("/console/coupons").text)
    assert "SPRING-50" in listed and "满 ¥300.00 减 ¥50.00" in listed and "生效中" in listed
    assert "100 / 100" in listed and "¥5,000.00 / ¥5,000.00" in listed and "2026-03-01 10:00" in listed

    detail = client.get(url)
    text = _text(detail.text)
    assert detail.status_code == 200 and "满300减50" in text and "品牌 70% · 门店 30%" in text
    assert "领取后 30 天内有效，至当天结束" in text and "可与其他券叠加" in text and "¥50.00" in text
    assert 'id="coupon-code-import"' not in detail.text  # generated codes

    # Restock: errors in the restock form, then 20 more coupons and 1,000 yuan more budget.
    no_reason = s.post(f"{url}/stock", {"quantity": "20"})
    assert (
        no_reason.status_code == 422
        and 'id="coupon-restock"' in no_reason.text
        and "reason:" in no_reason.text
    )
    assert s.post(f"{url}/stock", {"quantity": "-500", "reason": "x"}).status_code == 409
    done = s.post(
        f"{url}/stock", {"quantity": "20", "budget": "1000", "reason": "加推"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == url
    stock = _text(client.get(url).text.split('id="coupon-stock"')[1].split("</section>")[0])
    assert "剩余库存（共 120） 120" in stock and "剩余预算（共 ¥6,000.00） ¥6,000.00" in stock

    # An imported-code template: a CSV with a header, a repeat and an invalid code.
    imported = s.post(
        "/console/coupons/templates",
        {**FORM, "code": "PARTNER", "code_source": "imported", "stock_total": "", "budget_total": ""},
        follow_redirects=False,
    )
    assert imported.status_code == 303
    partner = imported.headers["location"]
    csv_text = "code\nJD-0001-AAAA\nJD-0002-BBBB\nJD-0001-AAAA\nab\nJD-0003-CCCC\n"
    result = client.post(
        f"{partner}/codes",
        data={"csrf_token": s.csrf},
        files={"file": ("codes.csv", csv_text.encode(), "text/csv")},
    )
    assert result.status_code == 200, result.text
    report = _text(result.text.split('id="code-import-result"')[1].split("</div>")[0])
    assert (
        "已导入 3 个；重复 1 个，无效 1 个，已存在 0 个。" in report
        and "第 4 行" in report
        and "第 5 行" in report
    )
    assert 'id="stock-left">3<' in result.text
    generated = client.post(
        f"{url}/codes", data={"csrf_token": s.csrf}, files={"file": ("c.csv", b"X-1234", "text/csv")}
    )
    assert generated.status_code == 422 and "file: the template&#39;s codes are generated" in generated.text

    # Push: pasted ids (an unknown one refused first), then the same members again from a file of
    # member numbers: all skipped, one coupon each is the limit.
    h = a.headers
    members = [enroll(client, h, name=f"会员{n}") for n in range(3)]
    unknown = s.post(f"{url}/push", {"member_ids": f"{members[0]['id']}\n999999"})
    assert unknown.status_code == 422 and "unknown member &#39;999999&#39;" in unknown.text
    assert re.search(r'<textarea name="member_ids"[^>]* aria-invalid="true">', unknown.text)
    pasted = "\n".join(str(m["id"]) for m in members)
    started = s.post(f"{url}/push", {"member_ids": pasted, "reference": "双11"}, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("/console/coupons/push/")
    run = client.get(started.headers["location"])
    assert run.status_code == 200 and 'data-status="completed"' in run.text and "hx-get" not in run.text
    assert "已完成" in run.text and 'id="push-issued">3<' in run.text and 'id="push-skipped">0<' in run.text
    numbers = "member_number\n" + "\n".join(m["member_number"] for m in members) + "\n"
    again = client.post(
        f"{url}/push",
        data={"csrf_token": s.csrf, "member_ids": ""},
        files={"file": ("members.csv", numbers.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert again.status_code == 303
    progress = client.get(again.headers["location"] + "/progress", headers=HX)
    assert progress.status_code == 200 and "<html" not in progress.text
    assert 'id="push-issued">0<' in progress.text and 'id="push-skipped">3<' in progress.text
    assert "已达限领 ×3" in _text(progress.text) and "coupon-limit-reached" not in _text(progress.text)
    recent = _text(client.get(url).text.split('id="template-coupons"')[1].split("</table>")[0])
    assert recent.count("定向发券") == 3 and "可用" in recent

    # Pause: no more pushing; the English page reads the same template.
    paused = s.post(f"{url}/status", {"status": "paused"}, follow_redirects=False)
    assert paused.status_code == 303
    page = client.get(url)
    assert "已暂停" in page.text and "券模板启用后才能发券" in page.text
    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get(url).text)
    assert "Paused" in english and "¥50.00 off ¥300.00 or more" in english and "Restock" in english
    assert "券模板" not in english


def test_lookup_void_settlement_and_figures(client, world: World) -> None:
    seeded = _redeemed_coupon(client, world)
    make_user(world.db, "op", "operator", world.brands[0].id)
    s = signed_in(client, "op")

    # By code (typed in lower case): the coupon with its trail, the discount and the store.
    found = client.get("/console/coupons/lookup", params={"code": seeded["redeemed"]["code"].lower()})
    assert found.status_code == 200 and 'id="coupon-detail"' in found.text
    trail = _text(found.text.split('id="coupon-events"')[1].split("</table>")[0])
    assert trail.index("发放") < trail.index("锁定") < trail.index("核销") and "¥50.00" in trail
    assert seeded["store"] in found.text.split('id="coupon-store"')[1][:200]
    assert 'id="coupon-void"' not in found.text  # used coupons cannot be voided
    # By member: both coupons, newest first.
    by_member = client.get("/console/coupons/lookup", params={"member_id": str(seeded["member"]["id"])})
    rows = _text(by_member.text.split('id="coupon-results"')[1].split("</table>")[0])
    assert "已核销" in rows and "可用" in rows and 'id="coupon-detail"' not in by_member.text
    assert "a member id is a number" in client.get("/console/coupons/lookup?member_id=abc").text
    assert "没有找到券" in client.get("/console/coupons/lookup?code=NOPE").text

    # Void the unused coupon; voiding the used one is refused on the page.
    other = f"/console/coupons/lookup/{seeded['available']['id']}"
    assert 'id="coupon-void"' in client.get(other).text
    assert s.post(f"{other}/void", {"reason": ""}).status_code == 422
    voided = s.post(f"{other}/void", {"reason": "客诉补偿重发"}, follow_redirects=False)
    assert voided.status_code == 303 and voided.headers["location"] == other
    after = _text(client.get(other).text)
    assert "已作废" in after and "reason: 客诉补偿重发" in after
    refused = s.post(f"/console/coupons/lookup/{seeded['redeemed']['id']}/void", {"reason": "x"})
    assert refused.status_code == 409 and "The coupon is redeemed." in refused.text
    with world.db.unit_of_work() as session:
        assert session.get(Coupon, seeded["available"]["id"]).status == "voided"  # type: ignore[union-attr]

    # Settlement of this month so far (the default): totals, funders, lines, chart data, files.
    page = client.get("/console/coupons/settlement")
    assert page.status_code == 200 and 'id="settlement-chart"' in page.text
    assert "¥50.00" in page.text.split('id="settlement-net"')[1][:40]
    parties = _text(page.text.split('id="settlement-parties"')[1].split("</p>")[0])
    assert "品牌 ¥35.00" in parties and "门店 ¥15.00" in parties
    lines = _text(page.text.split('id="settlement-lines"')[1].split("</table>")[0])
    assert seeded["store"] in lines and "¥35.00" in lines
    query = re.search(r'href="/console/coupons/settlement.csv\?([^"]+)"', page.text)
    assert query
    chart = client.get(f"/console/coupons/settlement.json?{query.group(1).replace('&amp;', '&')}").json()
    assert chart["months"] == ["品牌", "门店"] and chart["series"][0]["data"] == [35.0, 15.0]
    as_csv = client.get(f"/console/coupons/settlement.csv?{query.group(1).replace('&amp;', '&')}")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.startswith("\ufeff") and "净额 / Net" in as_csv.text and "50.00" in as_csv.text
    assert "attachment" in as_csv.headers["content-disposition"]
    as_xlsx = client.get(f"/console/coupons/settlement.xlsx?{query.group(1).replace('&amp;', '&')}")
    book = load_workbook(io.BytesIO(as_xlsx.content))
    assert len(book.sheetnames) == 2 and as_xlsx.headers["content-type"].endswith("spreadsheetml.sheet")
    backwards = client.get("/console/coupons/settlement?from=2026-03-02&to=2026-03-01&period=month")
    assert backwards.status_code == 422 and "must be after from" in backwards.text
    empty = client.get("/console/coupons/settlement?from=2020-01-01&to=2020-01-31&period=month")
    assert "暂无数据" in empty.text

    # Figures per template (with the chart data), per store and per channel.
    figures = client.get("/console/coupons/figures")
    row = _text(figures.text.split('id="coupon-figures"')[1].split("</table>")[0])
    assert "满300减50" in row and "50.0%" in row and "¥50.00" in row and "¥300.00" in row
    data = client.get("/console/coupons/figures.json").json()
    assert data["categories"] == ["满300减50"] and [x["data"][0] for x in data["series"]] == [2, 1, 0, 50.0]
    per_store = client.get("/console/coupons/figures?by=store")
    assert per_store.status_code == 200 and seeded["store"] in per_store.text
    per_channel = _text(client.get("/console/coupons/figures?by=channel").text)
    assert "活动发放" in per_channel

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = client.get("/console/coupons/settlement")
    assert "Net cost per funder" in english.text and "Download Excel" in english.text
    assert "Brand ¥35.00" in _text(english.text) and "券结算" not in english.text


# Brand isolation is the ORM's scope criteria, the same on both backends: SQLite is enough here.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_read_only_roles_platform_users_and_other_brands(client, world: World) -> None:
    seeded = _redeemed_coupon(client, world)
    a, b = world.brands
    tid = seeded["template"]["id"]
    pushed = client.post(
        f"{TEMPLATES}/{tid}/push", json={"member_ids": [seeded["member"]["id"]]}, headers=a.headers
    )
    run = f"/console/coupons/push/{pushed.json()['id']}"
    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    assert client.get(run).status_code == 200
    assert 'id="coupon-template-form"' not in client.get("/console/coupons").text
    page = client.get(f"/console/coupons/templates/{tid}")
    assert (
        page.status_code == 200
        and 'id="coupon-restock"' not in page.text
        and 'id="coupon-push"' not in page.text
    )
    assert 'id="coupon-void"' not in client.get(f"/console/coupons/lookup/{seeded['available']['id']}").text
    assert s.post("/console/coupons/templates", FORM).status_code == 403
    assert (
        s.post(f"/console/coupons/templates/{tid}/stock", {"quantity": "1", "reason": "x"}).status_code == 403
    )
    assert (
        s.post(f"/console/coupons/lookup/{seeded['available']['id']}/void", {"reason": "x"}).status_code
        == 403
    )
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")
    assert client.get(f"/console/coupons/templates/{tid}").status_code == 404
    assert client.get(run).status_code == 404 and client.get(f"{run}/progress").status_code == 404
    assert (
        s.post(f"/console/coupons/templates/{tid}/stock", {"quantity": "1", "reason": "x"}).status_code == 404
    )
    assert s.post(f"/console/coupons/templates/{tid}/status", {"status": "paused"}).status_code == 404
    assert client.get(f"/console/coupons/lookup/{seeded['redeemed']['id']}").status_code == 404
    assert (
        s.post(f"/console/coupons/lookup/{seeded['available']['id']}/void", {"reason": "x"}).status_code
        == 404
    )
    listed = client.get("/console/coupons").text.split('id="coupon-templates"')[1].split("</table>")[0]
    assert "SPRING-50" not in listed and "暂无" in listed
    assert "没有找到券" in client.get(f"/console/coupons/lookup?code={seeded['redeemed']['code']}").text
    assert "¥0.00" in client.get("/console/coupons/settlement").text.split('id="settlement-net"')[1][:40]
    with world.db.unit_of_work() as session:
        assert session.get(CouponTemplate, tid).status == "active"  # type: ignore[union-attr]
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    for url in (
        "/console/coupons",
        "/console/coupons/lookup",
        "/console/coupons/settlement",
        "/console/coupons/figures",
    ):
        shown = client.get(url)
        assert shown.status_code == 200 and "请先在顶部选择一个品牌" in shown.text, url
    assert client.get("/console/coupons/settlement.json").json()["series"] == []


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
BRAND, USER = "lx-coupons", "coupon-admin"  # this module's own on the shared console


def _seed(url: str) -> None:
    """A brand with two stores, three templates and a week of redemptions and two refunds (through the
    services)."""
    from huiyuan.auth import service as auth
    from huiyuan.coupons import checkout, issuing, templates
    from huiyuan.coupons.schemas import CartIn, TemplateIn
    from huiyuan.kit import clock
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import SYSTEM, system_for_brand
    from huiyuan.members import service as members
    from huiyuan.members.schemas import MemberEnroll
    from huiyuan.tenancy import service as tenancy

    db = Database(url)
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=BRAND, name="乐享百货", member_number_prefix="LX")
        brand_id = brand.id
        auth.create_user(
            s, actor=SYSTEM, username=USER, password=PASSWORD, role="brand_admin", brand_id=brand_id
        )
    actor = system_for_brand(brand_id)
    shares = {
        "SPRING-50": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],
        "MALL-20": [{"party": "platform", "percent": "50"}, {"party": "brand", "percent": "50"}],
        "PARTNER-30": [{"party": "third_party", "party_id": "银联", "percent": "100"}],
    }
    discounts = {
        "SPRING-50": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
        "MALL-20": {"kind": "amount_off", "amount": "20.00"},
        "PARTNER-30": {"kind": "threshold", "threshold": "200.00", "amount": "30.00"},
    }
    names = {"SPRING-50": "春季满300减50", "MALL-20": "商城立减20", "PARTNER-30": "银联满200减30"}
    with db.unit_of_work(actor.scope) as s:
        stores = [
            tenancy.create_store(s, actor=actor, code=code, name=name, city="杭州市", province="浙江省").id
            for code, name in (("hz-01", "杭州湖滨店"), ("hz-02", "杭州西溪店"))
        ]
        ids = {}
        for code, rules in discounts.items():
            data = TemplateIn.model_validate(
                {
                    "code": code,
                    "name": names[code],
                    "status": "active",
                    "rules": {
                        "discount": rules,
                        "stacking": "stackable",
                        "cost_sharing": shares[code],
                        "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
                    },
                    "stock_total": 5000,
                    "budget_total": "200000.00",
                    "limit_per_member": 20,
                    "claimable": True,
                }
            )
            ids[code] = templates.create_template(s, actor=actor, data=data).id
        people = [
            members.enroll_member(s, actor=actor, data=MemberEnroll(enroll_channel="store", name=name)).id
            for name in ("王小明", "李华", "张伟", "王芳", "陈静", "刘洋")
        ]
    now = datetime.now(UTC)
    previous = clock.get_clock()
    try:
        for n in range(24):
            code = ("SPRING-50", "MALL-20", "PARTNER-30")[n % 3]
            clock.set_clock(clock.FrozenClock(now - timedelta(days=6 - n % 7, hours=n % 5)))
            with db.unit_of_work(actor.scope) as s:
                coupon = issuing.issue(
                    s,
                    actor=actor,
                    template_id=ids[code],
                    member_id=people[n % 6],
                    key=f"seed-{n}",
                    channel=("push", "claim", "activity")[n % 3],
                ).coupon.id
            if n % 4 == 3:
                continue  # some coupons stay unused
            cart = CartIn.model_validate(
                {
                    "lines": [{"line_id": "1", "sku": "SKU", "unit_price": str(320 + 10 * n), "quantity": 1}],
                    "scene": "in_store",
                    "store_id": stores[n % 2],
                }
            )
            with db.unit_of_work(actor.scope) as s:
                held = checkout.lock(
                    s,
                    actor=actor,
                    member_id=people[n % 6],
                    order_ref=f"SO-{n}",
                    data=cart,
                    coupon_ids=[coupon],
                    ttl_minutes=15,
                    key=f"lock-{n}",
                ).lock.id
            with db.unit_of_work(actor.scope) as s:
                checkout.redeem(s, actor=actor, lock_id=held, payment_reference=f"PAY-{n}")
            if n in (4, 9):  # two orders refunded in full the next hour
                clock.set_clock(clock.FrozenClock(clock.utcnow() + timedelta(hours=1)))
                with db.unit_of_work(actor.scope) as s:
                    checkout.return_lock(s, actor=actor, lock_id=held, reason="整单退款")
    finally:
        clock.set_clock(previous)
    db.dispose()


@pytest.fixture(scope="module")
def server(live_console: LiveConsole) -> str:
    """The shared console with this module's brand seeded."""
    _seed(live_console.database_url)
    return live_console.url


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_templates_page_and_settlement_chart_in_chromium(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

    rate_limiter().storage.reset()
    shots = (
        Path(os.environ["HUIYUAN_CONSOLE_SCREENSHOTS"])
        if os.environ.get("HUIYUAN_CONSOLE_SCREENSHOTS")
        else None
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="zh-CN")
        page.set_default_timeout(10_000)
        try:
            page.goto(server + "/console/login?next=/console/coupons")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/coupons")
            listed = page.locator("#coupon-templates").inner_text()
            assert "春季满300减50" in listed and "满 ¥300.00 减 ¥50.00" in listed
            page.get_by_role("link", name="春季满300减50").click()
            page.wait_for_url("**/console/coupons/templates/*")
            assert "5,000" in page.locator("#coupon-stock").inner_text()
            assert page.locator("#coupon-push textarea").count() == 1
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "console-coupons-template.png"), full_page=True)

            page.goto(server + "/console/coupons/settlement?" + _last_week())
            page.wait_for_selector("#settlement-chart canvas")
            assert page.locator("#settlement-chart canvas").first.bounding_box()["width"] > 300  # type: ignore[index]
            assert "银联" in page.locator("#settlement-parties").inner_text()
            page.wait_for_timeout(800)  # let the bars finish their entry animation
            page.screenshot(path=str(tmp_path / "settlement.png"), full_page=True)
            assert (tmp_path / "settlement.png").stat().st_size > 10_000
            if shots:
                page.screenshot(path=str(shots / "console-coupons-settlement.png"), full_page=True)
        except Exception:
            Path("test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path="test-artifacts/test_coupons_console.png", full_page=True)
            raise
        finally:
            browser.close()


def _last_week() -> str:
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=7), today + timedelta(days=1)
    return f"from={start.isoformat()}&to={end.isoformat()}&period=day"
