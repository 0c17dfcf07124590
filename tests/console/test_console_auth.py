"""Console sign-in, throttling, CSRF, sign-out and the brand switcher, on both databases."""

from __future__ import annotations

from sqlalchemy import select

from huiyuan.auth.deps import SESSION_COOKIE
from huiyuan.auth.models import ConsoleSession
from huiyuan.settings import get_settings
from tests.conftest import World
from tests.console.conftest import csrf_of, login, make_user, signed_in
from tests.factories import enroll


def test_unauthenticated_pages_redirect_to_login(client, world: World) -> None:
    r = client.get("/console/members?status=active", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=%2Fconsole%2Fmembers%3Fstatus%3Dactive"
    htmx = client.post("/console/members", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/console/login")


def test_login_success_sets_a_hardened_cookie_and_follows_next(client, world: World) -> None:
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    r = login(client, "alice", next_url="/console/members")
    assert r.status_code == 303 and r.headers["location"] == "/console/members"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = client.get("/console/members")
    assert page.status_code == 200 and "alice" in page.text


def test_login_failure_and_open_redirects(client, world: World) -> None:
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    bad = login(client, "alice", password="wrong-password")
    assert bad.status_code == 401 and "用户名或密码错误" in bad.text
    assert SESSION_COOKIE not in client.cookies
    unknown = login(client, "nobody", password="whatever-password")
    assert unknown.status_code == 401
    r = login(client, "alice", next_url="https://evil.example/")
    assert r.headers["location"] == "/console"
    r = login(client, "alice", next_url="/console//evil.example")
    assert r.headers["location"] == "/console"


def test_login_form_needs_its_csrf_token(client, world: World) -> None:
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"username": "alice", "password": "correct-horse-battery", "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and SESSION_COOKIE not in client.cookies


def test_login_attempts_are_throttled(client, world: World, monkeypatch) -> None:
    monkeypatch.setattr(get_settings(), "login_rate_limit", "3/minute")  # fewer slow argon2 checks
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    statuses = [login(client, "alice", password=f"wrong-{i}").status_code for i in range(3)]
    assert statuses == [401] * 3
    r = login(client, "alice")  # even the right password waits now
    assert r.status_code == 429
    assert "登录尝试过多" in r.text and int(r.headers["Retry-After"]) >= 1
    assert SESSION_COOKIE not in client.cookies


def test_csrf_is_required_on_console_writes(client, world: World) -> None:
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    s = signed_in(client, "alice")
    r = client.post("/console/logout", data={}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/console/keys", data={"name": "x", "scopes": ["members:read"], "csrf_token": "nope"})
    assert r.status_code == 403
    r = client.post(
        "/console/members", data={"q": ""}, headers={"X-CSRF-Token": "nope", "HX-Request": "true"}
    )
    assert r.status_code == 403 and r.headers["HX-Reswap"] == "innerHTML" and "<html" not in r.text
    # HTMX sends the token as a header instead of a form field.
    r = client.post(
        "/console/members", data={"q": ""}, headers={"X-CSRF-Token": s.csrf, "HX-Request": "true"}
    )
    assert r.status_code == 200
    assert client.get("/console").status_code == 200  # still signed in


def test_logout_closes_the_session(client, world: World) -> None:
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    s = signed_in(client, "alice")
    token = client.cookies[SESSION_COOKIE]
    r = s.post("/console/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    client.cookies.set(SESSION_COOKIE, token)  # replaying the old cookie does not work
    assert client.get("/console", follow_redirects=False).status_code == 303
    with world.db.unit_of_work() as sess:
        assert sess.scalars(select(ConsoleSession)).one().revoked_at is not None


def test_platform_user_switches_brand(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers, name="甲会员")
    make_user(world.db, "root", "platform_admin", None)
    s = signed_in(client, "root")
    assert client.get(f"/console/members/{m['id']}").status_code == 200  # every brand
    r = s.post("/console/brand", {"brand_id": str(b.id), "next": "/console/members"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/members"
    assert client.get(f"/console/members/{m['id']}").status_code == 404
    page = client.get("/console/members")
    assert "甲会员" not in page.text
    s.post("/console/brand", {"brand_id": ""})
    assert "甲会员" in client.get("/console/members").text


def test_brand_user_cannot_switch_brand(client, world: World) -> None:
    make_user(world.db, "alice", "brand_admin", world.brands[0].id)
    s = signed_in(client, "alice")
    page = client.get("/console")
    assert 'name="brand_id"' not in page.text
    r = s.post("/console/brand", {"brand_id": str(world.brands[1].id)})
    assert r.status_code == 403
    assert csrf_of(client.get("/console").text) == s.csrf
