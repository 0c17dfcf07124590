"""Console page of the brand's merchant registry (商户) in both languages: the list beside the point
types, creating a merchant through the form (errors shown in the form, nothing written), editing its
name, contact and status (audited), the read-only role refused, and brand isolation."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.points.merchant_models import Merchant
from huiyuan.points.merchants import MerchantIn, create_merchant
from tests.conftest import World
from tests.console.conftest import make_user, signed_in

PAGE = "/console/points/merchants"
HX = {"HX-Request": "true"}


def _text(html: str) -> str:
    """What a reader sees: tags removed, white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _row(html: str, code: str) -> str:
    match = re.search(rf'<tr data-merchant="{re.escape(code)}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for {code}"
    return _text(match.group(1)).strip()


def _register(db: Database, brand_id: int, **fields: Any) -> int:
    actor = system_for_brand(brand_id)
    data = MerchantIn.model_validate({"code": "mall-plaza", "name": "中心广场购物中心", **fields})
    with db.unit_of_work(actor.scope) as s:
        return create_merchant(s, actor=actor, data=data).merchant.id


def _merchants(db: Database) -> list[tuple[int, str, str, str | None, str]]:
    with db.unit_of_work() as s:
        rows = s.scalars(select(Merchant).order_by(Merchant.id))
        return [(m.brand_id, m.code, m.name, m.contact, m.status) for m in rows]


def _load(db: Database) -> list[Merchant]:
    with db.unit_of_work() as s:
        rows = list(s.scalars(select(Merchant)))
        s.expunge_all()
        return rows


def _audit(db: Database, merchant_id: int) -> list[tuple[str, dict[str, Any]]]:
    with db.unit_of_work() as s:
        stmt = (
            select(AuditEntry)
            .where(AuditEntry.entity_type == "merchant", AuditEntry.entity_id == str(merchant_id))
            .order_by(AuditEntry.id)
        )
        return [(e.action, e.changes) for e in s.scalars(stmt)]


def test_list_shows_merchants_of_the_brand_beside_the_point_types(client, world: World) -> None:
    a = world.brands[0]
    _register(world.db, a.id, contact="王经理 021-5555 0101")
    _register(world.db, a.id, code="mall-mixc", name="万象城", status="inactive")
    make_user(world.db, "boss", "brand_admin", a.id)
    signed_in(client, "boss")

    page = client.get(PAGE)

    assert page.status_code == 200, page.text
    assert 'href="/console/points/merchants" class="active"' in page.text  # in the points sub-navigation
    assert "商户" in page.text and 'id="merchant-form"' in page.text
    plaza = _row(page.text, "mall-plaza")
    assert plaza.startswith("mall-plaza 中心广场购物中心 王经理 021-5555 0101 合作中 ")
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", plaza)  # updated, in the brand's time
    assert _row(page.text, "mall-mixc").startswith("mall-mixc 万象城 — 已停用 ")
    types = client.get("/console/points/types")
    assert 'href="/console/points/merchants"' in types.text  # the link beside the point types


def test_create_through_the_form(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    form = {"code": "mall-plaza", "name": "中心广场购物中心", "contact": " 王经理 ", "status": "active"}

    r = s.post(PAGE, form, follow_redirects=False)

    assert r.status_code == 303 and r.headers["location"] == PAGE
    assert _merchants(world.db) == [(a.id, "mall-plaza", "中心广场购物中心", "王经理", "active")]
    assert "中心广场购物中心" in _row(client.get(PAGE).text, "mall-plaza")
    # The same form sent again answers the merchant already there and writes nothing more.
    again = s.post(PAGE, form, headers=HX)
    assert again.status_code == 200 and again.headers["HX-Redirect"] == PAGE
    assert len(_merchants(world.db)) == 1
    (merchant_id,) = [m.id for m in _load(world.db)]
    assert [action for action, _ in _audit(world.db, merchant_id)] == ["merchant.created"]


def test_bad_code_is_shown_in_the_form_and_writes_nothing(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    form = {"code": "Mall Plaza!", "name": "中心广场购物中心", "contact": "", "status": "active"}

    page = s.post(PAGE, form)
    assert page.status_code == 422
    assert 'role="alert"' in page.text and "code: " in page.text
    assert re.search(r'name="code" value="Mall Plaza!"[^>]*aria-invalid="true"', page.text)
    assert 'value="中心广场购物中心"' in page.text  # what was typed is kept
    assert "<h1>" in page.text  # the whole page without HTMX

    fragment = s.post(PAGE, form, headers=HX)
    assert fragment.status_code == 422
    assert fragment.text.lstrip().startswith('<section class="card" id="merchant-form">')
    assert "code: " in fragment.text and "<h1>" not in fragment.text

    assert _merchants(world.db) == []

    # A code registered with other fields is refused in the form as well.
    _register(world.db, a.id)
    taken = s.post(PAGE, {**form, "code": "mall-plaza", "name": "别的名字"})
    assert taken.status_code == 409 and "code: " in taken.text
    assert [m[2] for m in _merchants(world.db)] == ["中心广场购物中心"]


def test_update_changes_name_contact_and_status_and_is_audited(client, world: World) -> None:
    a = world.brands[0]
    merchant_id = _register(world.db, a.id, contact="王经理")
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")

    edit = client.get(f"{PAGE}/mall-plaza")
    assert edit.status_code == 200
    assert re.search(r'name="code" value="mall-plaza"[^>]* readonly', edit.text)
    assert f'action="{PAGE}/mall-plaza"' in edit.text and 'value="王经理"' in edit.text

    form = {"name": "中心广场（东区）", "contact": "", "status": "inactive"}
    r = s.post(f"{PAGE}/mall-plaza", form, follow_redirects=False)

    assert r.status_code == 303 and r.headers["location"] == PAGE
    assert _merchants(world.db) == [(a.id, "mall-plaza", "中心广场（东区）", None, "inactive")]
    audit = _audit(world.db, merchant_id)
    assert [action for action, _ in audit] == ["merchant.created", "merchant.updated"]
    assert audit[-1][1] == {
        "name": ["中心广场购物中心", "中心广场（东区）"],
        "contact": ["王经理", None],
        "status": ["active", "inactive"],
    }
    assert _row(client.get(PAGE).text, "mall-plaza").startswith("mall-plaza 中心广场（东区） — 已停用 ")

    # An empty name is shown in the edit form (HTMX gets the fragment) and changes nothing.
    bad = s.post(f"{PAGE}/mall-plaza", {**form, "name": " "}, headers=HX)
    assert bad.status_code == 422 and "name: " in bad.text and 'id="merchant-form"' in bad.text
    assert _merchants(world.db)[0][2] == "中心广场（东区）"
    assert len(_audit(world.db, merchant_id)) == 2

    assert client.get(f"{PAGE}/no-such").status_code == 404


def test_read_only_user_sees_the_list_but_cannot_post(client, world: World) -> None:
    a = world.brands[0]
    _register(world.db, a.id)
    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")

    page = client.get(PAGE)
    assert page.status_code == 200 and "中心广场购物中心" in page.text
    assert 'id="merchant-form"' not in page.text and f'href="{PAGE}/mall-plaza"' not in page.text

    assert s.post(PAGE, {"code": "mall-mixc", "name": "万象城"}).status_code == 403
    assert s.post(f"{PAGE}/mall-plaza", {"name": "偷改", "status": "active"}).status_code == 403
    assert [(m[1], m[2]) for m in _merchants(world.db)] == [("mall-plaza", "中心广场购物中心")]


def test_another_brands_user_does_not_see_the_merchant(client, world: World) -> None:
    a, b = world.brands
    _register(world.db, a.id)
    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")

    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'data-merchant="' not in page.text
    assert "mall-plaza" not in page.text and "中心广场购物中心" not in page.text
    other = client.get(f"{PAGE}/mall-plaza")
    assert other.status_code == 404 and "中心广场购物中心" not in other.text
    assert s.post(f"{PAGE}/mall-plaza", {"name": "偷改", "status": "active"}).status_code == 404
    assert _merchants(world.db) == [(a.id, "mall-plaza", "中心广场购物中心", None, "active")]


def test_page_is_in_english_for_an_english_user(client, world: World) -> None:
    a = world.brands[0]
    _register(world.db, a.id, status="inactive")
    make_user(world.db, "eve", "brand_admin", a.id, locale="en")
    signed_in(client, "eve")

    page = client.get(PAGE)

    assert page.status_code == 200
    text = _text(page.text)
    for label in ("Merchants", "Contact", "Updated", "Add merchant", "Point types"):
        assert label in text, label
    assert _row(page.text, "mall-plaza").startswith("mall-plaza 中心广场购物中心 — Inactive ")
    assert "商户" not in text and "已停用" not in text and "联系方式" not in text
