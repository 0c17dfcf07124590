"""Console pages: search, detail, PII masking, tenancy, read-only roles, API keys, languages."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy import select

from huiyuan.auth.models import ApiKey
from huiyuan.console import i18n
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.factories import enroll

TEMPLATES = Path(i18n.__file__).parent / "templates"


def _rows(html: str) -> list[str]:
    return re.findall(r'<a href="/console/members/(\d+)">', html)


def test_member_search_by_name_number_phone_and_identifier(client, world: World) -> None:
    a = world.brands[0]
    wang = enroll(client, a.headers, name="王小明", phone="13800138000")
    enroll(client, a.headers, name="王芳", phone="13900139000")
    li = enroll(client, a.headers, name="李雷", identifiers=[{"type": "wechat_openid", "value": "oLiLei"}])
    make_user(world.db, "alice", "brand_admin", a.id)
    s = signed_in(client, "alice")
    hx = {"HX-Request": "true"}
    by_name = s.post("/console/members", {"q": "王"}, headers=hx)
    assert by_name.status_code == 200 and "王小明" in by_name.text and "王芳" in by_name.text
    assert "李雷" not in by_name.text and 'id="results"' in by_name.text and "<html" not in by_name.text
    by_number = s.post("/console/members", {"q": li["member_number"]}, headers=hx)
    assert set(_rows(by_number.text)) == {str(li["id"])}
    by_phone = s.post("/console/members", {"phone": "+86 138-0013-8000"}, headers=hx)
    assert set(_rows(by_phone.text)) == {str(wang["id"])}
    by_ident = s.post("/console/members", {"identifier": "oLiLei"}, headers=hx)
    assert set(_rows(by_ident.text)) == {str(li["id"])}
    nothing = s.post("/console/members", {"phone": "13700000000"}, headers=hx)
    assert _rows(nothing.text) == [] and "没有符合条件的会员" in nothing.text
    # GET filters (bookmarkable, no PII) render the full page
    page = client.get("/console/members?status=active&q=王")
    assert page.status_code == 200 and "<html" in page.text and len(set(_rows(page.text))) == 2


def test_member_list_cursor_pagination(client, world: World) -> None:
    a = world.brands[0]
    ids = [enroll(client, a.headers, name=f"会员{i:02d}")["id"] for i in range(23)]
    make_user(world.db, "alice", "brand_admin", a.id)
    s = signed_in(client, "alice")
    first = client.get("/console/members")
    assert "共 23 位会员" in first.text
    shown = list(dict.fromkeys(_rows(first.text)))
    assert shown == [str(i) for i in ids[:20]]
    cursor = re.search(r'name="cursor" value="([^"]+)"', first.text)
    assert cursor
    more = s.post("/console/members", {"cursor": cursor.group(1)}, headers={"HX-Request": "true"})
    rest = list(dict.fromkeys(_rows(more.text)))
    assert rest == [str(i) for i in ids[20:]] and 'name="cursor"' not in more.text
    assert "<table" not in more.text  # rows only, appended in place of the "more" row


def test_member_detail_masks_pii_for_analyst_and_shows_it_to_brand_admin(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(
        client,
        a.headers,
        name="王小明",
        phone="13800138000",
        identifiers=[{"type": "wechat_openid", "value": "oWangXiaoMing"}],
    )
    make_user(world.db, "ana", "analyst", a.id)
    make_user(world.db, "boss", "brand_admin", a.id)
    signed_in(client, "ana")
    masked = client.get(f"/console/members/{m['id']}")
    assert masked.status_code == 200 and "王小明" in masked.text
    assert "138****8000" in masked.text and "13800138000" not in masked.text
    assert "oWangXiaoMing" not in masked.text
    listing = client.get("/console/members")
    assert "138****8000" in listing.text and "13800138000" not in listing.text
    client.cookies.clear()
    signed_in(client, "boss")
    shown = client.get(f"/console/members/{m['id']}")
    assert "13800138000" in shown.text and "oWangXiaoMing" in shown.text
    assert "member.enrolled" in shown.text or "入会" in shown.text  # audit trail


def test_brand_user_gets_404_for_another_brands_member(client, world: World) -> None:
    a, b = world.brands
    theirs = enroll(client, b.headers, name="乙会员", phone="13600136000")
    make_user(world.db, "alice", "brand_admin", a.id)
    s = signed_in(client, "alice")
    r = client.get(f"/console/members/{theirs['id']}")
    assert r.status_code == 404 and "未找到" in r.text and "乙会员" not in r.text
    found = s.post("/console/members", {"phone": "13600136000"}, headers={"HX-Request": "true"})
    assert _rows(found.text) == []


def test_analyst_is_read_only(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    dashboard = client.get("/console")
    assert 'href="/console/keys"' not in dashboard.text
    assert client.get("/console/keys").status_code == 403
    r = s.post("/console/keys", {"name": "sneaky", "scopes": ["members:read"]})
    assert r.status_code == 403 and "没有权限" in r.text
    fields = client.get("/console/custom-fields")
    assert fields.status_code == 200 and "/retire" not in fields.text
    with world.db.unit_of_work() as sess:
        assert sess.scalars(select(ApiKey).where(ApiKey.name == "sneaky")).first() is None


def test_brand_admin_creates_and_revokes_a_key(client, world: World) -> None:
    a = world.brands[0]
    make_user(world.db, "boss", "brand_admin", a.id)
    s = signed_in(client, "boss")
    page = client.get("/console/keys")
    assert 'value="brands:manage"' not in page.text and 'value="*"' not in page.text
    r = s.post("/console/keys", {"name": "POS 同步", "scopes": ["members:read", "orders:write"]})
    assert r.status_code == 200
    secret = re.search(r'id="new-secret">([^<]+)<', r.text)
    assert secret and secret.group(1).startswith("hy_")
    api = client.get("/api/v1/members", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert api.status_code == 200
    again = client.get("/console/keys")
    assert secret.group(1) not in again.text and "POS 同步" in again.text  # shown once only
    bad = s.post("/console/keys", {"name": "x", "scopes": ["no:such"]})
    assert bad.status_code == 422 and "no:such" in bad.text
    with world.db.unit_of_work() as sess:
        key = sess.scalars(select(ApiKey).where(ApiKey.name == "POS 同步")).one()
        assert key.brand_id == a.id
    s.post(f"/console/keys/{key.id}/revoke")
    api = client.get("/api/v1/members", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert api.status_code == 401


def test_language_switch_renders_english_labels(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers, name="王小明", phone="13800138000")
    make_user(world.db, "alice", "brand_admin", a.id)
    signed_in(client, "alice")
    zh = client.get(f"/console/members/{m['id']}")
    assert "会员资料" in zh.text and "Member record" not in zh.text
    r = client.get(f"/console/lang?to=en&next=/console/members/{m['id']}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/console/members/{m['id']}"
    en = client.get(f"/console/members/{m['id']}")
    assert "Member record" in en.text and "Phone" in en.text and "会员资料" not in en.text
    assert '<html lang="en">' in en.text and "王小明" in en.text
    assert "Sign in to the console" in client.get("/console/login").text


def test_user_locale_is_the_default_language(client, world: World) -> None:
    make_user(world.db, "eve", "brand_admin", world.brands[0].id, locale="en")
    signed_in(client, "eve")
    assert "Dashboard" in client.get("/console").text


def test_dashboard_counts_and_chart_are_per_brand(client, world: World) -> None:
    a, b = world.brands
    enroll(client, a.headers, name="甲", enroll_channel="store")
    enroll(client, a.headers, name="乙", enroll_channel="mini_program")
    enroll(client, b.headers, name="丙", enroll_channel="store")
    make_user(world.db, "alice", "brand_admin", a.id)
    signed_in(client, "alice")
    page = client.get("/console")
    assert re.search(r"会员总数</span><span class=\"value\">2<", page.text)
    chart = client.get("/console/dashboard/enrollments.json").json()
    assert len(chart["months"]) == 12
    totals = {s["channel"]: sum(s["data"]) for s in chart["series"]}
    assert totals == {"store": 1, "mini_program": 1}
    assert chart["series"][0]["data"][-1] == 1  # enrolled this month
    assert {s["name"] for s in chart["series"]} == {"门店", "小程序"}


def test_vendor_and_own_static_files_are_served(client, world: World) -> None:
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    assert client.get("/static/vendor/echarts.min.js").status_code == 200
    assert client.get("/static/vendor/package.json").status_code == 404
    assert client.get("/static/console/console.css").status_code == 200
    assert client.get("/static/console/..%2F..%2Fsettings.py").status_code == 404


def test_catalogs_have_the_same_keys_and_cover_every_template_label() -> None:
    zh = json.loads((i18n.LOCALES_DIR / "zh.json").read_text(encoding="utf-8"))
    en = json.loads((i18n.LOCALES_DIR / "en.json").read_text(encoding="utf-8"))
    assert set(zh) == set(en)
    assert all(zh[k].strip() and en[k].strip() for k in zh)
    used = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"\bt\('([^']+)'", path.read_text(encoding="utf-8")))
    source = "".join(p.read_text(encoding="utf-8") for p in TEMPLATES.parent.glob("*.py"))
    used |= set(re.findall(r'translate\([^,]+, "([^"]+)"', source))
    assert used and used <= set(zh), sorted(used - set(zh))


def test_pages_work_without_vendor_assets(client, world: World, monkeypatch) -> None:
    from huiyuan.console import web

    monkeypatch.setattr(web, "vendor_dir", lambda: None)
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    signed_in(client, "alice")
    page = client.get("/console")
    assert page.status_code == 200 and "/static/vendor/" not in page.text and "make assets" in page.text
    assert client.get("/console/members").status_code == 200
    assert client.get("/static/vendor/htmx.min.js").status_code == 404


def test_vendor_assets_resolution_order(tmp_path: Path, monkeypatch) -> None:
    from huiyuan.console import web

    def install(root: Path) -> Path:
        for rel in web.VENDOR_FILES.values():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("/* vendor */")
        return root

    monkeypatch.chdir(tmp_path)
    web._vendor_dir.cache_clear()
    try:
        assert web._vendor_dir(str(tmp_path / "missing"), str(tmp_path / "no-project")) is None
        configured = install(tmp_path / "assets")
        project = install(tmp_path / "project" / "node_modules")
        assert web._vendor_dir(str(configured), str(tmp_path / "project")) == configured.resolve()
        assert web._vendor_dir("", str(tmp_path / "project")) == project.resolve()
        local = install(tmp_path / "node_modules")
        assert web._vendor_dir("", str(tmp_path / "no-project")) == local.resolve()
    finally:
        web._vendor_dir.cache_clear()


def test_times_are_shown_in_the_brand_time_zone(client, world: World) -> None:
    a = world.brands[0]
    enroll(client, a.headers, name="王小明", enrolled_at="2026-03-01T17:30:00Z")
    make_user(world.db, "alice", "brand_admin", a.id)
    signed_in(client, "alice")
    assert "2026-03-02 01:30" in client.get("/console/members").text  # Asia/Shanghai, UTC+8
