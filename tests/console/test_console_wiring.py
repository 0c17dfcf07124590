"""Console pages built on the other domains: custom fields, consents, orders, identifiers, imports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from huiyuan.settings import get_settings
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.factories import enroll


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Uploaded import files go to a temporary folder, not the working tree."""
    monkeypatch.setattr(get_settings(), "data_dir", str(tmp_path / "var"))
    return tmp_path / "var"


SHOE = {"key": "shoe_size", "label_zh": "鞋码", "label_en": "Shoe size", "type": "integer", "min": "30"}


def test_define_retire_and_reactivate_custom_fields(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    r = s.post("/console/custom-fields", {**SHOE, "max": "50"}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/console/custom-fields")
    assert (
        "shoe_size" in page.text
        and "鞋码" in page.text
        and "/console/custom-fields/shoe_size/retire" in page.text
    )
    bad = s.post("/console/custom-fields", {**SHOE, "key": "Bad Key"})
    assert bad.status_code == 422 and "key" in bad.text and 'value="Bad Key"' in bad.text
    enum_without_options = s.post(
        "/console/custom-fields", {**SHOE, "key": "skin", "type": "enum", "min": ""}
    )
    assert enum_without_options.status_code == 422 and "options" in enum_without_options.text
    taken = s.post("/console/custom-fields", {**SHOE, "label_zh": "别的"})
    assert taken.status_code == 409
    m = enroll(client, a.headers, name="王小明", custom={"shoe_size": 42})
    detail = client.get(f"/console/members/{m['id']}")
    assert re.search(r"<dt>鞋码</dt><dd>42</dd>", detail.text)
    client.get("/console/lang?to=en")
    assert re.search(r"<dt>Shoe size</dt><dd>42</dd>", client.get(f"/console/members/{m['id']}").text)
    s.post("/console/custom-fields/shoe_size/retire")
    page = client.get("/console/custom-fields")
    assert "Retired" in page.text and "/console/custom-fields/shoe_size/reactivate" in page.text
    s.post("/console/custom-fields/shoe_size/reactivate")
    assert "/console/custom-fields/shoe_size/retire" in client.get("/console/custom-fields").text


def test_analyst_cannot_define_custom_fields(client, world: World) -> None:
    make_user(world.db, "ana", "analyst", world.brands[0].id)
    s = signed_in(client, "ana")
    assert 'action="/console/custom-fields"' not in client.get("/console/custom-fields").text
    assert s.post("/console/custom-fields", SHOE).status_code == 403
    assert "shoe_size" not in client.get("/console/custom-fields").text


def test_member_detail_shows_consents_orders_cards_and_audit(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers, name="王小明", phone="13800138000")
    base = f"/api/v1/members/{m['id']}"
    for granted in (True, False):
        body = {"purpose": "marketing", "channel": "sms", "granted": granted, "source": "counter"}
        assert client.post(base + "/consents", json=body, headers=a.headers).status_code in (200, 201)
    order = {
        "order_number": "POS-9",
        "store_code": "alpha-s1",
        "channel": "store",
        "paid_at": "2026-03-15T06:30:00Z",
        "member_number": m["member_number"],
        "items": [
            {"sku": "TS-1", "name": "T恤", "quantity": 2, "list_price": "100.00", "deal_price": "80.00"}
        ],
        "payments": [{"method": "wechat_pay", "amount": "160.00"}],
    }
    r = client.post("/api/v1/orders", json=order, headers=a.headers)
    assert r.status_code == 201, r.text
    make_user(world.db, "boss", "brand_admin", a.id)
    signed_in(client, "boss")
    page = client.get(f"/console/members/{m['id']}").text
    consents = page[page.index('id="consents"') : page.index('id="orders"')]
    assert "营销触达" in consents and "短信" in consents and "已撤回" in consents
    assert "历史记录 (2)" in consents
    orders = page[page.index('id="orders"') : page.index('id="audit"')]
    assert "POS-9" in orders and "¥160.00" in orders
    assert "撤回授权" in page[page.index('id="audit"') :]


def test_import_upload_progress_and_error_report(client, world: World, data_dir: Path) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    csv_body = "姓名,手机\n张三,13811112222\n李四,not-a-phone\n".encode()
    r = client.post(
        "/console/imports",
        data={"csrf_token": s.csrf, "on_duplicate": "skip", "default_status": "active"},
        files={"file": ("members.csv", csv_body, "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    run_url = r.headers["location"]
    run_id = int(run_url.rsplit("/", 1)[1])
    page = client.get(run_url)
    assert page.status_code == 200 and "members.csv" in page.text
    progress = client.get(f"{run_url}/progress", headers={"HX-Request": "true"})
    assert 'data-status="succeeded"' in progress.text and "hx-trigger" not in progress.text
    assert "100.0%" in progress.text
    report = re.search(r'href="(/api/v1/imports/\d+/errors.csv)"', progress.text)
    assert report and report.group(1) == f"/api/v1/imports/{run_id}/errors.csv"
    csv_report = client.get(report.group(1))  # the console cookie authenticates the download
    assert csv_report.status_code == 200 and "phone" in csv_report.text.lower()
    assert len(list((data_dir / "imports").iterdir())) == 1
    listing = client.get("/console/imports")
    assert f'href="/console/imports/{run_id}"' in listing.text
    found = s.post("/console/members", {"q": "张三"}, headers={"HX-Request": "true"})
    assert "张三" in found.text


def test_import_refuses_csrf_less_uploads_and_other_brands_runs(client, world: World, data_dir: Path) -> None:
    a, b = world.brands
    make_user(world.db, "boss", "brand_admin", a.id)
    make_user(world.db, "other", "brand_admin", b.id)
    s = signed_in(client, "boss")
    files = {"file": ("m.csv", "姓名,手机\n张三,13811112222\n".encode(), "text/csv")}
    assert client.post("/console/imports", files=files, data={}).status_code == 403
    r = client.post("/console/imports", files=files, data={"csrf_token": s.csrf}, follow_redirects=False)
    run_url = r.headers["location"]
    client.cookies.clear()
    signed_in(client, "other")
    assert client.get(run_url).status_code == 404
