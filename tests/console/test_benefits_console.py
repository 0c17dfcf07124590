"""Console pages of benefits in both languages: the catalogue (create and edit with field errors, a
definition's counts, chart data and trail), the verification desk (look-up by member number, phone,
member QR code and one-time benefit code; scan, manual and identity-check verification with their
refusals; booking), the appointments of a day (move, verify, cancel), the settlement with its files
and chart data, card products (create and edit with field errors, cards sold) and a member's cards
with refund quotes; read-only roles, other brands and platform users; and, in headless Chromium,
the desk flow.

With ``HUIYUAN_CONSOLE_SCREENSHOTS=<dir>`` the browser test also saves the desk (for the docs) into
that folder.
"""

from __future__ import annotations

import io
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from tests.benefits.helpers import member_headers
from tests.conftest import World
from tests.console.conftest import PASSWORD, LiveConsole, make_user, signed_in
from tests.factories import enroll

HX = {"HX-Request": "true"}
SHANGHAI = ZoneInfo("Asia/Shanghai")
LIMITS = '{"uses_per_entitlement": 1, "per_period": [{"period": "day", "count": 1}], "duration_minutes": 120}'
PARKING = {
    "code": "PARK-2H",
    "name": "免费停车 2 小时",
    "kind": "service",
    "service_type": "parking",
    "verification": "scan",
    "limits": LIMITS,
    "valid_days": "30",
    "unit_cost": "10.00",
    "funded_by": "brand",
    "served_by": "store:car-park",
    "claim_limit": "1",
    "status": "active",
}
DEFINITIONS = [
    {
        "code": "PARK-2H",
        "name": "免费停车 2 小时",
        "kind": "service",
        "service_type": "parking",
        "verification": "scan",
        "limits": {"uses_per_entitlement": 2, "per_period": [{"period": "day", "count": 1}]},
        "unit_cost": "10.00",
        "served_by": "store:car-park",
    },
    {
        "code": "LOUNGE",
        "name": "贵宾厅",
        "kind": "service",
        "service_type": "lounge",
        "verification": "manual",
        "unit_cost": "50.00",
        "funded_by": "platform",
    },
    {
        "code": "STUDENT",
        "name": "学生礼遇",
        "kind": "custom",
        "verification": "identity_check",
        "unit_cost": "5.00",
    },
    {
        "code": "SPA-60",
        "name": "贵宾护理",
        "kind": "custom",
        "verification": "appointment",
        "appointment": {"slot_minutes": 60, "capacity": 2},
        "limits": {"uses_per_entitlement": 3},
        "unit_cost": "80.00",
    },
]


def _text(html: str) -> str:
    """What a reader sees: tags removed, white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _part(html: str, marker: str, end: str = "</table>") -> str:
    return _text(html.split(marker, 1)[1].split(end, 1)[0])


def _api(client: Any, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _seed(client: Any, world: World) -> dict[str, Any]:
    """Brand A's four benefits (scan, manual, identity check, appointment) and a member holding each."""
    h = world.brands[0].headers
    ids = {d["code"]: _api(client, "POST", "/api/v1/benefits/definitions", h, d)["id"] for d in DEFINITIONS}
    member = enroll(client, h, name="王小明", phone="13800138000")
    held = {}
    for code in ids:
        body = {"benefit": code, "idempotency_key": f"grant-{code}"}
        held[code] = _api(client, "POST", f"/api/v1/members/{member['id']}/benefits", h, body)["entitlement"][
            "id"
        ]
    return {"definitions": ids, "member": member, "entitlements": held}


def _tomorrow(hour: int, minute: int = 0) -> str:
    day = datetime.now(SHANGHAI).date() + timedelta(days=1)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}"


def test_catalogue_forms_detail_counts_and_chart(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    page = client.get("/console/benefits")
    assert page.status_code == 200 and 'href="/console/benefits"' in page.text
    assert 'id="benefit-definition-form"' in page.text and "uses_per_entitlement" in page.text

    # The service's validation, shown at the fields at fault (named as the API names them).
    window = '{"time_windows": [{"start": "18:00", "end": "09:00"}]}'
    bad = s.post("/console/benefits", {**PARKING, "limits": window, "service_type": ""}, headers=HX)
    assert bad.status_code == 422 and "<html" not in bad.text
    assert "limits.time_windows.0: Value error, end must be after start" in bad.text
    assert "service_type: Input should be" in bad.text and "service.service_type" not in bad.text
    assert re.search(r'<textarea name="limits"[^>]* aria-invalid="true">', bad.text)
    assert re.search(r'<select name="service_type" aria-invalid="true">', bad.text)
    assert 'value="免费停车 2 小时"' in bad.text
    not_json = s.post("/console/benefits", {**PARKING, "limits": "{"}, headers=HX)
    assert not_json.status_code == 422 and "limits: not valid JSON" in not_json.text
    points = s.post("/console/benefits", {**PARKING, "kind": "points", "point_type": "pts", "amount": "0"})
    assert points.status_code == 422 and "amount: Input should be greater than or equal to 1" in points.text
    created = s.post("/console/benefits", PARKING, headers=HX)
    assert created.status_code == 200 and created.headers["hx-redirect"].startswith(
        "/console/benefits/definitions/"
    )
    url = created.headers["hx-redirect"]
    taken = s.post("/console/benefits", PARKING, headers=HX)
    assert taken.status_code == 409 and "code: taken" in taken.text
    lounge = {
        **PARKING,
        "code": "LOUNGE",
        "name": "贵宾厅",
        "service_type": "lounge",
        "verification": "manual",
    }
    assert s.post("/console/benefits", {**lounge, "limits": ""}, follow_redirects=False).status_code == 303

    listed = _part(client.get("/console/benefits").text, 'id="benefit-definitions"')
    assert "PARK-2H" in listed and "服务 · 停车" in listed and "扫码核销" in listed and "人工核销" in listed
    assert (
        "每份 1 次 · 每日 1 次 · 每次 120 分钟" in listed and "¥10.00" in listed and "门店 car-park" in listed
    )
    only_manual = _text(client.get("/console/benefits?kind=service&status=active").text)
    assert "贵宾厅" in only_manual

    # Grants and uses (through the API) show in the counts, the chart data and the trail.
    member = enroll(client, a.headers, name="李华")
    lounge_id = int(
        re.findall(r'href="/console/benefits/definitions/(\d+)"', client.get("/console/benefits").text)[-1]
    )
    grant = {"benefit": "LOUNGE", "quantity": 2, "idempotency_key": "grant-1"}
    held = _api(client, "POST", f"/api/v1/members/{member['id']}/benefits", a.headers, grant)["entitlement"]
    _api(client, "POST", f"/api/v1/benefits/entitlements/{held['id']}/verify", a.headers, {"note": "2 位"})
    detail = client.get(f"/console/benefits/definitions/{lounge_id}")
    assert detail.status_code == 200 and 'id="count-issued">1<' in detail.text
    assert 'id="count-verified">1<' in detail.text and 'id="count-configured">1<' in detail.text
    trail = _part(detail.text, 'id="benefit-events"')
    assert trail.index("核销") < trail.index("发放") < trail.index("配置")  # newest first
    chart = client.get(f"/console/benefits/definitions/{lounge_id}/activity.json").json()
    assert len(chart["days"]) == 30 and [sum(x["data"]) for x in chart["series"]] == [1, 1]
    assert (
        chart["series"][0]["name"] == "发放"
        and chart["days"][-1] == datetime.now(SHANGHAI).date().isoformat()
    )
    empty = client.get(f"{url}/activity.json").json()
    assert empty["series"] == []

    # Edit: errors in the form, then a new cost and a pause, recorded in the trail.
    wrong = s.post(url, {**PARKING, "unit_cost": "-1", "claim_limit": "0", "limits": LIMITS})
    assert wrong.status_code == 422 and 'id="benefit-edit"' in wrong.text
    assert (
        "unit_cost: Input should be greater than or equal to 0" in wrong.text and "claim_limit:" in wrong.text
    )
    assert re.search(r'<input name="unit_cost" value="-1"[^>]* aria-invalid="true">', wrong.text)
    blank = s.post(url, {**PARKING, "funded_by": ""})
    assert blank.status_code == 422 and "funded_by: required" in blank.text
    changed = s.post(url, {**PARKING, "unit_cost": "12.00", "status": "paused"}, follow_redirects=False)
    assert changed.status_code == 303 and changed.headers["location"] == url
    after = client.get(url).text
    assert "已暂停" in after and "¥12.00" in _part(after, 'id="benefit-settings"', "</section>")
    assert "unit_cost" in _part(after, 'id="benefit-events"') and "status" in _part(
        after, 'id="benefit-events"'
    )

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get(url).text)
    assert "Paused" in english and "Service · Parking" in english and "1 use(s) each · 1 a day" in english
    assert "权益目录" not in english


def test_desk_verifies_books_and_settles(client, world: World) -> None:
    seeded = _seed(client, world)
    member, held = seeded["member"], seeded["entitlements"]
    make_user(world.db, "desk", "operator", world.brands[0].id)
    s = signed_in(client, "desk")
    assert 'id="desk-lookup"' in client.get("/console/benefits/desk").text

    # By member number and by phone: the member's active entitlements with a form per method.
    by_number = s.post("/console/benefits/desk", {"code": member["member_number"]}, headers=HX)
    assert (
        by_number.status_code == 200 and "<html" not in by_number.text and 'id="desk-panel"' in by_number.text
    )
    rows = _part(by_number.text, 'id="desk-entitlements"')
    assert all(name in rows for name in ("免费停车 2 小时", "贵宾厅", "学生礼遇", "贵宾护理"))
    assert "2 / 2" in rows and "138****8000" in by_number.text
    for action in ("/console/benefits/desk/scan", f"/entitlements/{held['LOUNGE']}/verify"):
        assert action in by_number.text
    assert f"/entitlements/{held['SPA-60']}/book" in by_number.text
    by_phone = s.post("/console/benefits/desk", {"code": "138 0013 8000"})
    assert (
        by_phone.status_code == 200 and "<html" in by_phone.text and 'id="desk-entitlements"' in by_phone.text
    )
    nobody = s.post("/console/benefits/desk", {"code": "NOPE-1"}, headers=HX)
    assert "没有找到会员" in nobody.text
    qr = client.get(f"/api/v1/members/{member['id']}/qr?format=json", headers=world.brands[0].headers).json()
    by_qr = s.post("/console/benefits/desk", {"code": qr["token"]}, headers=HX)
    assert by_qr.status_code == 200 and 'id="desk-entitlements"' in by_qr.text
    garbage = s.post("/console/benefits/desk", {"code": "x" * 30 + ".y"}, headers=HX)
    assert garbage.status_code == 422 and 'id="desk-lookup-errors"' in garbage.text

    # Manual: a note is required; then verified, the result recorded and shown.
    lounge = f"/console/benefits/desk/entitlements/{held['LOUNGE']}/verify"
    no_note = s.post(lounge, {"note": ""}, headers=HX)
    assert no_note.status_code == 422 and "note: required for manual verification" in no_note.text
    assert 'id="entitlement-errors"' in no_note.text and 'class="highlight"' in no_note.text
    ok = s.post(lounge, {"note": "两位宾客"}, headers=HX)
    assert ok.status_code == 200 and "已核销：贵宾厅" in _text(ok.text) and "¥50.00" in ok.text
    assert "贵宾厅" not in _part(ok.text, 'id="desk-entitlements"')  # used up: no longer active
    # Identity check: the ID number, of which only the last four characters are kept.
    student = f"/console/benefits/desk/entitlements/{held['STUDENT']}/verify"
    assert s.post(student, {"id_reference": ""}, headers=HX).status_code == 422
    checked = s.post(student, {"id_reference": "310101200001011234", "note": "学生证"}, headers=HX)
    result = _part(checked.text, 'id="desk-result"', "</div>")
    assert (
        "验证身份" in result and "**************1234" in result and "310101200001011234" not in checked.text
    )
    used_up = s.post(student, {"id_reference": "310101200001011234"}, headers=HX)
    assert used_up.status_code == 409
    assert "The entitlement is used_up." in _part(used_up.text, 'id="desk-errors"', "</div>")

    # Scan: the member's one-time code finds its entitlement, then is spent once.
    me = member_headers(client, world, member["id"])
    token = client.post(f"/api/v1/me/benefits/{held['PARK-2H']}/scan-code", headers=me).json()["token"]
    found = s.post("/console/benefits/desk", {"code": token}, headers=HX)
    assert (
        f'id="entitlement-{held["PARK-2H"]}" class="highlight"' in found.text
        and f'value="{token}"' in found.text
    )
    form = {"code": token, "member_id": str(member["id"]), "entitlement_id": str(held["PARK-2H"])}
    scanned = s.post("/console/benefits/desk/scan", {**form, "minutes": "90"}, headers=HX)
    assert scanned.status_code == 200 and "已核销：免费停车 2 小时" in _text(scanned.text)
    assert "剩余 1 次" in _text(scanned.text) and "每次 90 分钟" in _text(scanned.text)
    again = s.post("/console/benefits/desk/scan", form, headers=HX)
    assert again.status_code == 409 and "This code was already used" in again.text
    fresh = client.post(f"/api/v1/me/benefits/{held['PARK-2H']}/scan-code", headers=me).json()["token"]
    limited = s.post("/console/benefits/desk/scan", {**form, "code": fresh}, headers=HX)
    assert limited.status_code == 409 and "At most 1 use(s) per day." in limited.text
    assert (
        s.post(f"/console/benefits/desk/entitlements/{held['PARK-2H']}/verify", {"note": "x"}).status_code
        == 409
    )

    # Appointments: book at the desk, then move, verify and cancel on the day's list.
    book = f"/console/benefits/desk/entitlements/{held['SPA-60']}/book"
    odd = s.post(book, {"starts_at": _tomorrow(10, 15), "key": "k0"}, headers=HX)
    assert odd.status_code == 409 and "Slots start every 60 minutes." in odd.text
    booked = s.post(book, {"starts_at": _tomorrow(10), "key": "k1", "note": "靠窗"}, headers=HX)
    assert (
        booked.status_code == 200
        and 'id="desk-booked"' in booked.text
        and 'id="desk-bookings"' in booked.text
    )
    assert (
        s.post(book, {"starts_at": _tomorrow(10), "key": "k1", "note": "靠窗"}, headers=HX).status_code == 200
    )
    s.post(book, {"starts_at": _tomorrow(14), "key": "k2"}, headers=HX)
    day = _tomorrow(0)[:10]
    listing = client.get(f"/console/benefits/appointments?day={day}")
    rows = _part(listing.text, 'id="appointment-rows"')
    assert (
        listing.status_code == 200
        and rows.count("贵宾护理") == 2
        and "10:00–11:00" in rows
        and "靠窗" in rows
    )
    ids = [int(i) for i in re.findall(r'id="appointment-(\d+)"', listing.text)]
    moved = s.post(
        f"/console/benefits/appointments/{ids[0]}/rebook",
        {"starts_at": _tomorrow(11), "day": day},
        headers=HX,
    )
    assert moved.status_code == 200 and "预约已改期" in moved.text and "11:00–12:00" in moved.text
    assert "<html" not in moved.text and "改期 1 次" in moved.text
    wrong = s.post(
        f"/console/benefits/appointments/{ids[0]}/rebook",
        {"starts_at": _tomorrow(11, 30), "day": day},
        headers=HX,
    )
    assert wrong.status_code == 409 and 'id="appointment-errors"' in wrong.text
    came = s.post(f"/console/benefits/appointments/{ids[0]}/verify", {"day": day}, headers=HX)
    assert came.status_code == 200 and "到店核销成功" in came.text
    cancel = f"/console/benefits/appointments/{ids[1]}/cancel"
    cancelled = s.post(cancel, {"day": day, "reason": "改天"}, follow_redirects=False)
    assert (
        cancelled.status_code == 303
        and cancelled.headers["location"] == f"/console/benefits/appointments?day={day}"
    )
    statuses = _part(client.get(f"/console/benefits/appointments?day={day}").text, 'id="appointment-rows"')
    assert "已核销" in statuses and "已取消" in statuses
    closed = s.post(f"/console/benefits/appointments/{ids[1]}/verify", {"day": day})
    assert closed.status_code == 409 and "The appointment is cancelled." in closed.text
    # The desk's own list of open bookings: the member came.
    third = s.post(book, {"starts_at": _tomorrow(16), "key": "k3"}, headers=HX)
    booking = re.findall(r'id="booking-(\d+)"', third.text)
    assert len(booking) == 1
    at_desk = s.post(f"/console/benefits/appointments/{booking[0]}/verify", {"view": "desk"}, headers=HX)
    assert at_desk.status_code == 200 and "已核销：贵宾护理" in _text(at_desk.text)
    assert 'id="desk-bookings"' not in at_desk.text and "1 / 3" in _part(
        at_desk.text, 'id="desk-entitlements"'
    )

    # Settlement of this month: five uses between three pairs of parties, files and chart data.
    page = client.get("/console/benefits/settlement")
    assert page.status_code == 200 and 'id="settlement-uses">5<' in page.text
    assert "¥225.00" in page.text.split('id="settlement-amount"')[1][:40]
    between = _part(page.text, 'id="settlement-between"')
    assert "平台 品牌 1 ¥50.00" in between and "品牌 门店 car-park 1 ¥10.00" in between
    query = re.search(r'href="/console/benefits/settlement.csv\?([^"]+)"', page.text)
    assert query
    q = query.group(1).replace("&amp;", "&")
    as_csv = client.get(f"/console/benefits/settlement.csv?{q}")
    assert as_csv.headers["content-type"].startswith("text/csv") and as_csv.text.startswith("\ufeff")
    assert "store:car-park" in as_csv.text and "225.00" in as_csv.text
    book_ = load_workbook(io.BytesIO(client.get(f"/console/benefits/settlement.xlsx?{q}").content))
    assert len(book_.sheetnames) == 2
    chart = client.get(f"/console/benefits/settlement.json?{q}").json()
    assert chart["months"] == ["品牌", "平台"] and {x["name"] for x in chart["series"]} == {
        "品牌",
        "门店 car-park",
    }
    backwards = client.get("/console/benefits/settlement?from=2026-03-02&to=2026-03-01")
    assert backwards.status_code == 422 and "must be after from" in backwards.text


def test_card_products_and_member_cards(client, world: World) -> None:
    a = world.brands[0]
    seeded = _seed(client, world)
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    lines = '[{"benefit": {"kind": "benefit", "benefit": "PARK-2H", "quantity": 1}, "every": "month"}]'
    form = {
        "code": "PARK-YEAR",
        "name": "停车年卡",
        "price": "299.00",
        "validity_months": "12",
        "activation": "immediate",
        "status": "active",
        "lines": lines,
        "discount_percent": "5",
        "eligible_tiers": "",
    }
    assert 'id="card-product-form"' in client.get("/console/benefits/cards").text
    broken = s.post("/console/benefits/cards", {**form, "lines": "["})
    assert broken.status_code == 422 and "lines: not valid JSON" in broken.text
    no_value = '[{"benefit": {"kind": "points", "point_type": "pts", "amount": 100}, "every": "once"}]'
    valueless = s.post("/console/benefits/cards", {**form, "lines": no_value})
    assert valueless.status_code == 422 and "lines.0.value: required for this benefit" in valueless.text
    assert re.search(r'<textarea name="lines"[^>]* aria-invalid="true">', valueless.text)
    window = s.post(
        "/console/benefits/cards", {**form, "sale_from": "2026-03-02T10:00", "sale_to": "2026-03-01T10:00"}
    )
    assert window.status_code == 422 and "sale_to must be after sale_from" in window.text
    assert re.search(r'<input type="datetime-local" name="sale_to"[^>]* aria-invalid="true">', window.text)
    created = s.post("/console/benefits/cards", form, follow_redirects=False)
    assert created.status_code == 303
    url = created.headers["location"]
    product_id = int(url.rsplit("/", 1)[1])

    member = seeded["member"]
    buy = {"product_id": product_id, "payment_reference": "WX-1", "amount": "299.00"}
    _api(client, "POST", f"/api/v1/members/{member['id']}/benefit-cards", a.headers, buy)
    listed = _part(client.get("/console/benefits/cards").text, 'id="card-products"')
    assert "PARK-YEAR" in listed and "¥299.00" in listed and "12 个月" in listed and "¥240.00" in listed
    assert 'id="sold-PARK-YEAR">1<' in client.get("/console/benefits/cards").text
    detail = client.get(url)
    assert 'id="cards-sold">1<' in detail.text and "权益 PARK-2H × 1" in _text(detail.text)
    assert "折扣 5%" in _text(detail.text) and "所有会员" in _text(detail.text)

    # The member's cards: the refund quote (one month issued and unused: everything back).
    cards = client.get(f"/console/benefits/members/{member['id']}/cards")
    row = _part(cards.text, 'id="member-cards"')
    assert cards.status_code == 200 and "停车年卡" in row and "生效中" in row and "WX-1" in row
    assert "¥299.00 按未享用价值" in row and "退款将作废 1 项未用权益" in row

    # Edit: errors kept in the form, then a new price and the tiers that may buy.
    bad = s.post(url, {**form, "price": "-5"})
    assert bad.status_code == 422 and "price: Input should be greater than or equal to 0" in bad.text
    ok = s.post(url, {**form, "price": "329.00", "eligible_tiers": "gold, silver"}, follow_redirects=False)
    assert ok.status_code == 303
    after = _text(client.get(url).text)
    assert "¥329.00" in after and "gold" in after and "silver" in after
    assert "¥299.00" in _part(
        client.get(f"/console/benefits/members/{member['id']}/cards").text, 'id="member-cards"'
    )


# Brand isolation is the ORM's scope criteria, the same on both backends: SQLite is enough here.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_read_only_roles_other_brands_and_platform_users(client, world: World) -> None:
    seeded = _seed(client, world)
    a, b = world.brands
    member, held, ids = seeded["member"], seeded["entitlements"], seeded["definitions"]
    h = a.headers
    when = datetime.now(SHANGHAI).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    booking = _api(
        client,
        "POST",
        f"/api/v1/benefits/entitlements/{held['SPA-60']}/appointments",
        h,
        {"starts_at": when.isoformat(), "idempotency_key": "book-1"},
    )
    product = _api(
        client,
        "POST",
        "/api/v1/benefits/cards/products",
        h,
        {
            "code": "PARK-YEAR",
            "name": "停车年卡",
            "price": "299.00",
            "validity_months": 12,
            "lines": [{"benefit": {"kind": "benefit", "benefit": "PARK-2H"}, "every": "month"}],
        },
    )
    definition = f"/console/benefits/definitions/{ids['LOUNGE']}"
    appointment = f"/console/benefits/appointments/{booking['id']}"
    posts = {
        "/console/benefits": PARKING,
        definition: PARKING,
        f"/console/benefits/desk/entitlements/{held['LOUNGE']}/verify": {"note": "x"},
        f"/console/benefits/desk/entitlements/{held['SPA-60']}/book": {"starts_at": _tomorrow(9)},
        "/console/benefits/desk/scan": {"code": "x" * 30},
        f"{appointment}/verify": {},
        f"{appointment}/cancel": {},
        f"{appointment}/rebook": {"starts_at": _tomorrow(9)},
        "/console/benefits/cards": {"code": "X"},
        f"/console/benefits/cards/{product['id']}": {"name": "X"},
    }

    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    assert 'id="benefit-definition-form"' not in client.get("/console/benefits").text
    assert 'id="benefit-edit"' not in client.get(definition).text
    panel = client.get(f"/console/benefits/desk?member_id={member['id']}").text
    assert 'id="desk-entitlements"' in panel and "<form" not in panel.split('id="desk-entitlements"')[1]
    day = client.get(f"/console/benefits/appointments?day={when.date().isoformat()}").text
    assert "贵宾护理" in day and f"{appointment}/verify" not in day
    assert 'id="card-product-form"' not in client.get("/console/benefits/cards").text
    assert 'id="card-product-edit"' not in client.get(f"/console/benefits/cards/{product['id']}").text
    for url, body in posts.items():
        assert s.post(url, body).status_code == 403, url
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")
    for url in (
        definition,
        f"{definition}/activity.json",
        f"/console/benefits/desk?member_id={member['id']}",
        f"/console/benefits/cards/{product['id']}",
        f"/console/benefits/members/{member['id']}/cards",
    ):
        assert client.get(url).status_code == 404, url
    for url, body in posts.items():
        if url not in ("/console/benefits", "/console/benefits/cards", "/console/benefits/desk/scan"):
            assert s.post(url, body).status_code == 404, url
    assert "没有找到会员" in s.post("/console/benefits/desk", {"code": member["member_number"]}).text
    me = member_headers(client, world, member["id"])
    token = client.post(f"/api/v1/me/benefits/{held['PARK-2H']}/scan-code", headers=me).json()["token"]
    assert s.post("/console/benefits/desk", {"code": token}).status_code == 422
    foreign = s.post("/console/benefits/desk/scan", {"code": token})
    assert foreign.status_code == 422 and "The code is not valid" in foreign.text
    assert "PARK-2H" not in _part(client.get("/console/benefits").text, 'id="benefit-definitions"')
    assert 'id="settlement-uses">0<' in client.get("/console/benefits/settlement").text
    assert "停车年卡" not in _part(client.get("/console/benefits/cards").text, 'id="card-products"')
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    for url in (
        "/console/benefits",
        "/console/benefits/desk",
        "/console/benefits/appointments",
        "/console/benefits/settlement",
        "/console/benefits/cards",
    ):
        shown = client.get(url)
        assert shown.status_code == 200 and "请先在顶部选择一个品牌" in shown.text, url
    assert client.get("/console/benefits/settlement.json").json()["series"] == []


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
BRAND, USER = "lx-benefits", "benefits-desk"  # this module's own on the shared console


def _seed_desk(url: str) -> None:
    """A brand with a store, a catalogue of four benefits and a member holding them (services only)."""
    from huiyuan.auth import service as auth
    from huiyuan.benefits import catalogue, entitlements
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
            s, actor=SYSTEM, username=USER, password=PASSWORD, role="operator", brand_id=brand_id
        )
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        tenancy.create_store(
            s, actor=actor, code="hz-01", name="杭州湖滨店", city="杭州市", province="浙江省"
        )
        for body in DEFINITIONS:
            catalogue.create_definition(
                s, actor=actor, data=catalogue.DEFINITION_ADAPTER.validate_python(body)
            )
        member = members.enroll_member(
            s, actor=actor, data=MemberEnroll(enroll_channel="store", name="王小明", phone="13800138000")
        )
        for n, body in enumerate(DEFINITIONS):
            entitlements.grant_benefit(
                s,
                actor=actor,
                member_id=member.id,
                code=body["code"],
                quantity=2 if body["code"] == "LOUNGE" else 1,
                source_type="operator",
                source_id="seed",
                key=f"seed-{n}",
            )
    db.dispose()


@pytest.fixture(scope="module")
def server(live_console: LiveConsole) -> str:
    """The shared console with this module's brand seeded."""
    _seed_desk(live_console.database_url)
    return live_console.url


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_desk_flow_in_chromium(server: str) -> None:
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
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.set_default_timeout(10_000)
        try:
            page.goto(server + "/console/login?next=/console/benefits/desk")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/benefits/desk")
            # Staff type the phone: the panel comes in place (HTMX), the page stays.
            page.fill('#desk-lookup input[name="code"]', "13800138000")
            page.locator("#desk-lookup button").click()
            page.wait_for_selector("#desk-entitlements")
            assert "/console/benefits/desk" in page.url
            rows = page.locator("#desk-entitlements").inner_text()
            assert "贵宾厅" in rows and "免费停车 2 小时" in rows and "2 / 2" in rows
            lounge = page.locator("#desk-entitlements tr", has_text="贵宾厅")
            lounge.locator('button[type="submit"]').click()  # no note: the browser's own check stops nothing
            page.wait_for_selector("#entitlement-errors")
            assert "note: required" in page.locator("#entitlement-errors").inner_text()
            lounge = page.locator("#desk-entitlements tr", has_text="贵宾厅")
            lounge.locator('input[name="note"]').fill("两位宾客，已核对会员卡")
            lounge.locator("select[name=store_id]").select_option(label="杭州湖滨店")
            lounge.locator('button[type="submit"]').click()
            page.wait_for_selector("#desk-result")
            result = page.locator("#desk-result").inner_text()
            assert "已核销：贵宾厅" in result and "剩余 1 次" in result and "杭州湖滨店" in result
            assert "1 / 2" in page.locator("#desk-entitlements tr", has_text="贵宾厅").inner_text()
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "console-benefits-desk.png"), full_page=True)
        except Exception:
            Path("test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path="test-artifacts/test_benefits_console.png", full_page=True)
            raise
        finally:
            browser.close()
