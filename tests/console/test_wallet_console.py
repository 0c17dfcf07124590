"""Console pages of the stored-value wallet in both languages: wallet types and top-up rules (create
and edit with field errors, pause, retire), the account look-up by member number and phone, an
account (balances, chart data, lock and unlock with a reason and their audit rows, the statement
with filters, pages and CSV), the settlement between stores with its files and chart data; read-only
roles, other brands and platform users; and, in headless Chromium, an account page with its chart.

With ``HUIYUAN_CONSOLE_SCREENSHOTS=<dir>`` the browser test also saves the account page (for the
docs) into that folder.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from tests.conftest import World
from tests.console.conftest import PASSWORD, LiveConsole, make_user, signed_in
from tests.factories import enroll

TYPE = {
    "code": "giftcard",
    "name": "品牌礼品卡",
    "spend_order": "principal_first",
    "bonus_expiry_days": "365",
    "max_balance": "5000.00",
    "reservation_minutes": "15",
    "require_pin": "1",
}
RULE = {
    "code": "r10",
    "name": "周末充值赠10%",
    "wallet_type": "giftcard",
    "bonus_kind": "percent",
    "bonus_percent": "10",
    "bonus_cap": "200.00",
    "min_amount": "100.00",
    "priority": "10",
    "tier_codes": "gold, platinum",
    "channels": "",
    "valid_from": "",
    "valid_to": "",
}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _part(html: str, marker: str, end: str = "</table>") -> str:
    return _text(html.split(marker, 1)[1].split(end, 1)[0])


def _api(client: Any, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    r = client.post(path, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _wallet(client: Any, world: World, top_ups: int = 11) -> dict[str, Any]:
    """Brand A: a gift card wallet with a 10 % rule, a member who topped up ``top_ups`` × 100.00 at
    the brand's store and paid 150.00 there (50.00 after one top-up), and a member without a wallet."""
    h = world.brands[0].headers
    _api(client, "/api/v1/wallet/types", h, {"code": "giftcard", "name": "品牌礼品卡"})
    rule = {"code": "r10", "name": "充值赠10%", "wallet_type": "giftcard", "bonus_kind": "percent"}
    _api(client, "/api/v1/wallet/top-up-rules", h, {**rule, "bonus_percent": "10"})
    member = enroll(client, h, name="王小明", phone="13800138000")
    other = enroll(client, h, name="李华", phone="13900139000")
    for n in range(top_ups):
        body = {
            "idempotency_key": f"tu-{n:04d}",
            "member_id": member["id"],
            "wallet_type": "giftcard",
            "amount": "100.00",
            "channel": "store",
            "store": "alpha-s1",
            "payment_ref": f"WX-{n}",
        }
        account = _api(client, "/api/v1/wallet/top-ups", h, body)["wallet_account_id"]
    amount = "150.00" if top_ups > 1 else "50.00"
    pay = {"idempotency_key": "pay-1", "member_id": member["id"], "wallet_type": "giftcard", "amount": amount}
    _api(client, "/api/v1/wallet/payments", h, {**pay, "order_ref": "SO-1", "store": "alpha-s1"})
    return {"member": member, "other": other, "account": account}


def test_wallet_types_and_top_up_rules(client, world: World) -> None:
    make_user(world.db, "boss", "brand_admin", world.brands[0].id)
    s = signed_in(client, "boss")
    page = client.get("/console/wallet")
    assert page.status_code == 200 and 'href="/console/wallet"' in page.text
    assert 'id="wallet-type-form"' in page.text and 'id="wallet-rule-form"' not in page.text  # no type yet

    bad = s.post("/console/wallet/types", {**TYPE, "code": "Gift Card", "max_balance": "0"})
    assert bad.status_code == 422 and "code: String should match pattern" in bad.text
    assert "max_balance: Input should be greater than 0" in bad.text
    assert re.search(r'<input name="max_balance" value="0"[^>]* aria-invalid="true">', bad.text)
    created = s.post("/console/wallet/types", TYPE, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/console/wallet/types/giftcard"
    taken = s.post("/console/wallet/types", TYPE)
    assert taken.status_code == 409 and "code: already in use" in taken.text
    shown = _text(client.get("/console/wallet/types/giftcard").text)
    assert "品牌礼品卡" in shown and "365 天" in shown and "¥5,000.00" in shown and "w.giftcard.p" in shown

    edit = {**TYPE, "spend_order": "bonus_first", "bonus_expiry_days": "", "status": "active"}
    wrong = s.post("/console/wallet/types/giftcard", {**edit, "reservation_minutes": "0"})
    assert wrong.status_code == 422 and "reservation_minutes:" in wrong.text
    done = s.post("/console/wallet/types/giftcard", edit, follow_redirects=False)
    assert done.status_code == 303
    listed = _part(client.get("/console/wallet").text, 'id="wallet-types"')
    assert "先赠送后本金" in listed and "永不过期" in listed and "是" in listed

    # Rules: the service's checks at the fields, then a rule with its conditions.
    window = {"valid_from": "2026-03-02T00:00", "valid_to": "2026-03-01T00:00"}
    no_percent = s.post("/console/wallet/rules", {**RULE, "bonus_percent": "", **window})
    assert no_percent.status_code == 422
    assert "bonus_percent: a percentage above 0 is required" in no_percent.text
    assert "valid_to: must be after valid_from" in no_percent.text
    assert re.search(r'name="valid_to" value="2026-03-01T00:00"[^>]* aria-invalid="true"', no_percent.text)
    made = s.post("/console/wallet/rules", {**RULE, "weekdays": ["6", "7"]}, follow_redirects=False)
    assert made.status_code == 303
    rule_url = made.headers["location"]
    rules = _part(client.get("/console/wallet").text, 'id="wallet-rules"')
    assert "r10" in rules and "赠 10% · 最多 ¥200.00" in rules and "满 ¥100.00" in rules
    assert "gold, platinum" in rules and "周六、周日" in rules and "生效中" in rules
    paused = s.post(rule_url, {**RULE, "weekdays": ["6", "7"], "status": "paused"}, follow_redirects=False)
    assert paused.status_code == 303 and "已暂停" in client.get(rule_url).text
    assert s.post(rule_url, {**RULE, "status": "retired"}, follow_redirects=False).status_code == 303
    retired = client.get(rule_url)
    assert "规则已停用" in retired.text and f'action="{rule_url}"' not in retired.text
    again = s.post(rule_url, {**RULE, "status": "active"})
    assert again.status_code == 409 and "A retired rule cannot change." in again.text

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get("/console/wallet").text)
    assert "Bonus first" in english and "Never expires" in english and "Retired" in english
    assert "充值规则" not in english


def test_account_lookup_lock_statement_and_settlement(client, world: World) -> None:
    seeded = _wallet(client, world)
    member, account = seeded["member"], seeded["account"]
    make_user(world.db, "op", "operator", world.brands[0].id)
    s = signed_in(client, "op")

    found = s.post("/console/wallet/accounts", {"q": member["member_number"]})
    holders = _part(found.text, 'id="wallet-holders"')
    assert "王小明" in holders and "giftcard" in holders and "¥950.00" in holders and "¥110.00" in holders
    assert "¥1,060.00" in holders and f'href="/console/wallet/accounts/{account}"' in found.text
    by_phone = _part(s.post("/console/wallet/accounts", {"phone": "13900139000"}).text, 'id="wallet-holders"')
    assert "李华" in by_phone and "没有储值账户" in by_phone
    assert s.post("/console/wallet/accounts", {"q": "", "phone": ""}).status_code == 422
    by_id = client.get(f"/console/wallet/accounts?member_id={member['id']}")
    assert "¥950.00" in by_id.text

    url = f"/console/wallet/accounts/{account}"
    page = client.get(url)
    assert page.status_code == 200 and "¥950.00" in page.text.split('id="balance-principal"')[1][:30]
    assert "¥110.00" in page.text.split('id="balance-bonus"')[1][:30]
    assert "[950.0, 110.0, 0.0]" in page.text  # the doughnut's data
    first = _part(page.text, 'id="wallet-statement"')
    assert first.count("充值") == 19 and first.count("支付") == 1 and "SO-1" in first and "alpha-s1" in first
    more = re.search(r'id="statement-next" href="([^"]+)"', page.text)
    assert more
    second = client.get(more.group(1).replace("&amp;", "&"))
    assert (
        _part(second.text, 'id="wallet-statement"').count("充值") == 3
        and 'id="statement-next"' not in second.text
    )
    payments = _part(client.get(f"{url}?activity=payment").text, 'id="wallet-statement"')
    assert payments.count("支付") == 1 and "充值" not in payments
    bonus = client.get(f"{url}?sub_ledger=bonus")
    assert _part(bonus.text, 'id="wallet-statement"').count("赠送金") == 11
    assert "没有流水" in client.get(f"{url}?from=2020-01-01&to=2020-01-31").text
    as_csv = client.get(f"{url}/statement.csv?sub_ledger=bonus")
    assert (
        as_csv.status_code == 200
        and as_csv.text.startswith("\ufeff")
        and "attachment" in as_csv.headers["content-disposition"]
    )
    assert as_csv.text.count("\r\n") == 2 + 11 and ",bonus,earn,10.00," in as_csv.text

    # Lock with a reason (required), audited; the wallet then refuses payments; unlock again.
    no_reason = s.post(f"{url}/lock", {"reason": ""})
    assert (
        no_reason.status_code == 422
        and "reason:" in no_reason.text
        and 'id="wallet-action-errors"' in no_reason.text
    )
    locked = s.post(f"{url}/lock", {"reason": "卡片挂失"}, follow_redirects=False)
    assert locked.status_code == 303 and locked.headers["location"] == url
    page = client.get(url)
    assert (
        "钱包已锁定：卡片挂失" in page.text
        and 'id="wallet-unlock"' in page.text
        and 'id="wallet-lock"' not in page.text
    )
    assert "wallet.locked" in _part(page.text, 'id="wallet-audit"') and "卡片挂失" in _part(
        page.text, 'id="wallet-audit"'
    )
    pay = {"idempotency_key": "pay-2", "member_id": member["id"], "wallet_type": "giftcard", "amount": "1.00"}
    refused = client.post("/api/v1/wallet/payments", json=pay, headers=world.brands[0].headers)
    assert refused.status_code == 409 and refused.json()["code"] == "wallet-locked"
    unlocked = s.post(f"{url}/unlock", {"reason": "本人到店核验"}, follow_redirects=False)
    assert unlocked.status_code == 303 and 'id="wallet-lock"' in client.get(url).text
    with world.db.unit_of_work() as session:
        actions = session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.entity_type == "wallet_account")
            .order_by(AuditEntry.id)
        ).all()
        assert actions[-2:] == ["wallet.locked", "wallet.unlocked"]

    # Settlement of this month: the store collected 1,100.00 and honoured 150.00 of it.
    settled = client.get("/console/wallet/settlement")
    lines = _part(settled.text, 'id="wallet-settlement-lines"')
    assert settled.status_code == 200 and "alpha-s1" in lines and "¥1,100.00" in lines and "¥950.00" in lines
    query = re.search(r'href="/console/wallet/settlement.csv\?([^"]+)"', settled.text)
    assert query
    q = query.group(1).replace("&amp;", "&")
    as_csv = client.get(f"/console/wallet/settlement.csv?{q}")
    assert as_csv.text.startswith("\ufeff") and "alpha-s1" in as_csv.text and "950.00" in as_csv.text
    book = load_workbook(io.BytesIO(client.get(f"/console/wallet/settlement.xlsx?{q}").content))
    assert len(book.sheetnames) == 2
    chart = client.get(f"/console/wallet/settlement.json?{q}").json()
    assert chart["months"] == ["alpha-s1"] and chart["series"][0]["data"] == [950.0]
    narrowed = client.get("/console/wallet/settlement?wallet_type=nope")
    assert narrowed.status_code == 422 and "no wallet type &#39;nope&#39;" in narrowed.text

    client.get("/console/lang?to=en&next=/console", follow_redirects=False)
    english = _text(client.get(url).text)
    assert (
        "Principal" in english
        and "Top-up" in english
        and "Lock the wallet" in english
        and "本金" not in english
    )


# Brand isolation is the ORM's scope criteria, the same on both backends: SQLite is enough here.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_read_only_roles_other_brands_and_platform_users(client, world: World) -> None:
    seeded = _wallet(client, world, top_ups=1)
    account, member = seeded["account"], seeded["member"]
    a, b = world.brands
    rule_id = client.get("/api/v1/wallet/top-up-rules", headers=a.headers).json()[0]["id"]
    url = f"/console/wallet/accounts/{account}"
    posts = {
        "/console/wallet/types": TYPE,
        "/console/wallet/types/giftcard": TYPE,
        "/console/wallet/rules": RULE,
        f"/console/wallet/rules/{rule_id}": RULE,
        f"{url}/lock": {"reason": "x"},
        f"{url}/unlock": {"reason": "x"},
    }

    make_user(world.db, "ana", "analyst", a.id)
    s = signed_in(client, "ana")
    config = client.get("/console/wallet").text
    assert 'id="wallet-type-form"' not in config and 'id="wallet-rule-form"' not in config
    page = client.get(url).text
    assert 'id="wallet-lock"' not in page and 'id="wallet-statement"' in page
    assert 'id="wallet-type-edit"' not in client.get("/console/wallet/types/giftcard").text
    assert 'id="wallet-rule-edit"' not in client.get(f"/console/wallet/rules/{rule_id}").text
    for target, body in posts.items():
        assert s.post(target, body).status_code == 403, target
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "bob", "brand_admin", b.id)
    s = signed_in(client, "bob")
    for target in (
        url,
        f"{url}/statement.csv",
        "/console/wallet/types/giftcard",
        f"/console/wallet/rules/{rule_id}",
    ):
        assert client.get(target).status_code == 404, target
    assert client.get(f"/console/wallet/accounts?member_id={member['id']}").status_code == 404
    for target, body in posts.items():
        if target not in ("/console/wallet/types", "/console/wallet/rules"):
            assert s.post(target, body).status_code == 404, target
    assert "没有找到会员" in s.post("/console/wallet/accounts", {"q": member["member_number"]}).text
    assert "giftcard" not in _part(client.get("/console/wallet").text, 'id="wallet-types"')
    assert "alpha-s1" not in client.get("/console/wallet/settlement").text
    client.post("/console/logout", data={"csrf_token": s.csrf})

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    for target in ("/console/wallet", "/console/wallet/accounts", "/console/wallet/settlement"):
        shown = client.get(target)
        assert shown.status_code == 200 and "请先在顶部选择一个品牌" in shown.text, target
    assert client.get("/console/wallet/settlement.json").json()["series"] == []


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
BRAND, USER = "lx-wallet", "wallet-admin"  # this module's own on the shared console


def _seed(url: str) -> int:
    """A brand with two stores, a gift card wallet with a 10 % rule, and a member's wallet with
    top-ups, payments and a refund (through the services). Returns the wallet account's id."""
    from decimal import Decimal

    from huiyuan.auth import service as auth
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import SYSTEM, system_for_brand
    from huiyuan.members import service as members
    from huiyuan.members.schemas import MemberEnroll
    from huiyuan.tenancy import service as tenancy
    from huiyuan.wallet import configuration, payments, refunds
    from huiyuan.wallet.schemas import PayIn, RefundIn, TopUpIn, TopUpRuleIn, WalletTypeIn

    db = Database(url)
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=BRAND, name="乐享百货", member_number_prefix="LX")
        brand_id = brand.id
        auth.create_user(
            s, actor=SYSTEM, username=USER, password=PASSWORD, role="brand_admin", brand_id=brand_id
        )
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        for code, name in (("hz-01", "杭州湖滨店"), ("hz-02", "杭州西溪店")):
            tenancy.create_store(s, actor=actor, code=code, name=name, city="杭州市", province="浙江省")
        configuration.create_type(
            s, actor=actor, data=WalletTypeIn(code="giftcard", name="品牌礼品卡", bonus_expiry_days=365)
        )
        configuration.create_rule(
            s,
            actor=actor,
            data=TopUpRuleIn(
                code="r10",
                name="充值赠10%",
                wallet_type="giftcard",
                bonus_kind="percent",
                bonus_percent=Decimal(10),
                bonus_cap=Decimal(200),
            ),
        )
        member_id = members.enroll_member(
            s, actor=actor, data=MemberEnroll(enroll_channel="store", name="王小明", phone="13800138000")
        ).id
    steps: list[tuple[str, Any]] = [
        ("top_up", ("500.00", "hz-01")),
        ("pay", ("128.00", "hz-01")),
        ("top_up", ("1000.00", "hz-02")),
        ("pay", ("399.00", "hz-02")),
        ("pay", ("86.50", "hz-01")),
        ("refund", ("28.00", "pay-1")),
    ]
    account_id = 0
    for n, (kind, (amount, where)) in enumerate(steps):
        with db.unit_of_work(actor.scope) as s:
            if kind == "top_up":
                data = TopUpIn(
                    member_id=member_id,
                    wallet_type="giftcard",
                    amount=Decimal(amount),
                    channel="store",
                    store=where,
                    payment_ref=f"WX-{n}",
                )
                account_id = payments.top_up(s, actor=actor, data=data, key=f"tu-{n}").data[
                    "wallet_account_id"
                ]
            elif kind == "pay":
                data = PayIn(
                    member_id=member_id,
                    wallet_type="giftcard",
                    amount=Decimal(amount),
                    store=where,
                    order_ref=f"SO-{n}",
                )
                payments.pay(s, actor=actor, data=data, key=f"pay-{n}", hold=False)
            else:
                refunds.refund_payment(
                    s,
                    actor=actor,
                    payment_key=where,
                    data=RefundIn(amount=Decimal(amount), reason="部分退货"),
                    key="rf-1",
                )
    db.dispose()
    return account_id


@pytest.fixture(scope="module")
def server(live_console: LiveConsole) -> tuple[str, int]:
    """The shared console with this module's brand seeded; the seeded wallet account's id."""
    return live_console.url, _seed(live_console.database_url)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed")
def test_wallet_account_page_in_chromium(server: tuple[str, int]) -> None:
    from playwright.sync_api import sync_playwright

    from huiyuan.auth.deps import rate_limiter

    base, account_id = server
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
            page.goto(base + "/console/login?next=/console/wallet/accounts")
            page.fill('input[name="username"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            page.locator('button[type="submit"]').click()
            page.wait_for_url("**/console/wallet/accounts")
            page.fill('#wallet-lookup input[name="phone"]', "13800138000")
            page.locator("#wallet-lookup button").click()
            page.locator("#wallet-holders a", has_text="giftcard").click()
            page.wait_for_url(f"**/console/wallet/accounts/{account_id}")
            page.wait_for_selector("#wallet-balance-chart canvas")
            assert page.locator("#wallet-balance-chart canvas").first.bounding_box()["width"] > 200  # type: ignore[index]
            assert "¥150.00" in page.locator("#balance-bonus").inner_text()
            assert "SO-4" in page.locator("#wallet-statement").inner_text()
            page.wait_for_timeout(600)  # let the doughnut finish its entry animation
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "console-wallet-account.png"), full_page=True)
        except Exception:
            Path("test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path="test-artifacts/test_wallet_console.png", full_page=True)
            raise
        finally:
            browser.close()
