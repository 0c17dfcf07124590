"""Browser tests: Debian's Chromium (headless, through Playwright) drives the console served by a real
uvicorn (the shared ``live_console``) on a temporary, migrated SQLite database, with a brand of this
module's own seeded through the services.

Flow, in Chinese and then in English: sign in → search by name → search by exact phone → member detail;
plus the dashboard chart, "load more" on the member list, an import with its progress and report, and
the points liability and tier distribution charts after configuring points and tiers through the forms.
A failing test leaves a screenshot in ``test-artifacts/``. With ``HUIYUAN_CONSOLE_SCREENSHOTS=<dir>``
the tests also save the member list, member detail, dashboard, points liability and tiers pages (for
the README) into that folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import LiveConsole

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"
    ),
]
ARTIFACTS = Path("test-artifacts")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-test-password"
BRAND = "lx-browser"
MEMBERS = [
    ("王小明", "13800138000", "mini_program", 0),
    ("李华", "13911112222", "store", 1),
    ("张伟", "13722223333", "store", 2),
    ("王芳", "13633334444", "app", 3),
    ("陈静", "13544445555", "douyin", 5),
    ("刘洋", "13355556666", "mini_program", 8),
]
# More members over the year so the dashboard chart has something to show (no 王, no 138…).
EXTRA = [
    (
        "赵孙周吴郑冯陈褚卫蒋"[i % 10] + "嘉怡子涵浩然欣悦"[i % 8] + "一二三四五六七八九十"[i // 10],
        f"150{i:08d}",
        ("store", "mini_program", "app", "web", "douyin")[(i * 7) % 5],
        (i * 5) % 12,
    )
    for i in range(30)
]
ALL_MEMBERS = MEMBERS + EXTRA


def _seed(url: str) -> None:
    from huiyuan.auth import service as auth
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import SYSTEM, system_for_brand
    from huiyuan.members import service as members
    from huiyuan.members.schemas import MemberEnroll
    from huiyuan.tenancy import service as tenancy

    db = Database(url)
    now = datetime.now(UTC)
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=BRAND, name="乐享百货", member_number_prefix="LX")
        auth.create_user(
            s, actor=SYSTEM, username="manager", password=PASSWORD, role="brand_admin", brand_id=brand.id
        )
        actor = system_for_brand(brand.id)
        for name, phone, channel, months_ago in ALL_MEMBERS:
            members.enroll_member(
                s,
                actor=actor,
                data=MemberEnroll(
                    name=name,
                    phone=phone,
                    enroll_channel=channel,  # type: ignore[arg-type]
                    gender="female" if name.endswith(("芳", "静", "华")) else "male",
                    province="浙江省",
                    city="杭州市",
                    enrolled_at=now - timedelta(days=30 * months_ago),
                ),
            )
    db.dispose()


@pytest.fixture(scope="module")
def server(live_console: LiveConsole, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared console with this module's brand seeded; uploads go to a folder of the module's."""
    from huiyuan.settings import get_settings

    settings = get_settings()
    saved_data_dir = settings.data_dir
    settings.data_dir = str(tmp_path_factory.mktemp("browser") / "var")  # uploads stay out of the tree
    _seed(live_console.database_url)
    yield live_console.url
    settings.data_dir = saved_data_dir


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    from huiyuan.auth.deps import rate_limiter

    rate_limiter().storage.reset()
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    context.set_default_timeout(10_000)
    pg = context.new_page()
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def _screenshot_dir() -> Path | None:
    target = os.environ.get("HUIYUAN_CONSOLE_SCREENSHOTS")
    return Path(target) if target else None


def _search(page: Any, field: str, value: str, expect: str) -> None:
    box = page.locator(f'#member-filters input[name="{field}"]')
    box.fill(value)
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
        arg=["#results", expect],
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_login_search_and_member_detail(server: str, page: Any, lang: str) -> None:
    labels = {
        "zh": {"members": "会员", "record": "会员资料", "count": "共 {} 位会员"},
        "en": {
            "members": "Members",
            "record": "Member record",
            "count": "Matching members: {}",
        },
    }[lang]
    page.goto(server + "/console/members")
    assert "/console/login" in page.url
    assert page.locator("h1").inner_text() == "登录控制台"  # Chinese by default
    page.fill('input[name="username"]', "manager")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('button[type="submit"]').click()
    page.wait_for_url("**/console/members")
    if lang == "en":  # the switch in the top bar reloads the same page in English
        page.get_by_role("link", name="English").click()
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert page.url.endswith("/console/members")
    assert page.locator("h1").inner_text() == labels["members"]

    # Search as you type: name prefix, then exact phone (blind index) with the name cleared.
    _search(page, "q", "王", labels["count"].format(2))
    results = page.locator("#results").inner_text()
    assert "王小明" in results and "王芳" in results and "李华" not in results
    page.locator('#member-filters input[name="q"]').fill("")
    _search(page, "phone", "138 0013 8000", labels["count"].format(1))
    results = page.locator("#results").inner_text()
    assert "王小明" in results and "王芳" not in results
    if lang == "zh" and (shots := _screenshot_dir()):
        page.locator('#member-filters input[name="phone"]').fill("")
        _search(page, "q", "", labels["count"].format(len(ALL_MEMBERS)))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "console-members.png"))
        _search(page, "phone", "13800138000", labels["count"].format(1))

    page.get_by_role("link", name="王小明").first.click()
    page.wait_for_url("**/console/members/*")
    assert page.locator("#record h2").inner_text() == labels["record"]
    assert page.locator("h1").inner_text().startswith("王小明")
    assert page.locator("#member-phone").inner_text() == "13800138000"  # brand admin: unmasked
    assert "杭州市" in page.locator("#record").inner_text()
    if lang == "zh" and (shots := _screenshot_dir()):
        page.screenshot(path=str(shots / "console-member-detail.png"), full_page=True)


def test_dashboard_draws_the_enrollment_chart(server: str, page: Any) -> None:
    page.goto(server + "/console/login")
    page.fill('input[name="username"]', "manager")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('button[type="submit"]').click()
    page.wait_for_url(server + "/console")
    page.wait_for_selector("#enrollments-chart canvas")
    assert str(len(ALL_MEMBERS)) in page.locator(".stats").inner_text()
    if shots := _screenshot_dir():
        shots.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(800)  # let the bars finish their entry animation
        page.screenshot(path=str(shots / "console-dashboard.png"))


def test_member_list_loads_more_rows_in_place(server: str, page: Any) -> None:
    page.goto(server + "/console/login?next=/console/members")
    page.fill('input[name="username"]', "manager")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('button[type="submit"]').click()
    page.wait_for_url("**/console/members")
    rows = page.locator("#member-rows tr:not(#more-row)")
    assert rows.count() == 20
    page.locator("#more-row button").click()
    page.wait_for_function(f"document.querySelectorAll('#member-rows tr').length === {len(ALL_MEMBERS)}")
    assert page.locator("#more-row").count() == 0
    assert page.url.endswith("/console/members")  # appended by HTMX, no navigation


def test_import_upload_shows_progress_and_error_report(server: str, page: Any, tmp_path: Path) -> None:
    upload = tmp_path / "新会员.csv"
    upload.write_text("姓名,手机\n钱多多,15912345678\n孙小美,not-a-phone\n", encoding="utf-8")
    page.goto(server + "/console/login?next=/console/imports")
    page.fill('input[name="username"]', "manager")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('button[type="submit"]').click()
    page.wait_for_url("**/console/imports")
    page.set_input_files('input[name="file"]', str(upload))
    page.locator('form[action="/console/imports"] button[type="submit"]').click()
    page.wait_for_url("**/console/imports/*")
    page.wait_for_selector('#import-progress[data-status="succeeded"]')
    progress = page.locator("#import-progress").inner_text()
    assert "100.0%" in progress
    with page.expect_download() as download:
        page.locator("#error-report").click()
    report = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert len(report) == 2 and report[1].startswith("3,手机,") and "孙小美" in report[1]


def _take_tier_snapshots(url: str, brand_code: str, days: list[Any]) -> None:
    """What the daily ``tiers.snapshot`` job records, for days the worker (off in these tests) missed."""
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import SYSTEM, system_for_brand
    from huiyuan.tenancy.repository import TenancyRepository
    from huiyuan.tiers import distribution

    db = Database(url)
    with db.unit_of_work(SYSTEM.scope) as s:
        brand_id = next(b.id for b in TenancyRepository(s).brands() if b.code == brand_code)
    with db.unit_of_work(system_for_brand(brand_id).scope) as s:
        for day in days:
            distribution.take_snapshot(s, brand_id=brand_id, day=day)
    db.dispose()


def test_points_liability_and_tier_charts_after_configuring_through_the_forms(
    server: str, live_console: LiveConsole, page: Any, tmp_path: Path
) -> None:
    page.goto(server + "/console/login?next=/console/points/types")
    page.fill('input[name="username"]', "manager")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('button[type="submit"]').click()
    page.wait_for_url("**/console/points/types")

    # A point type and an earn rule through their forms (HTMX posts, then the list reloads).
    form = page.locator("#point-type-form form")
    form.locator('input[name="code"]').fill("points")
    form.locator('input[name="name"]').fill("会员积分")
    form.locator('input[name="fair_value"]').fill("0.01")
    form.locator('textarea[name="expiry_policy"]').fill('{"kind": "relative", "months": 2}')
    form.locator('button[type="submit"]').click()
    page.wait_for_function("(document.querySelector('#point-types')?.innerText || '').includes('会员积分')")
    page.goto(server + "/console/points/rules")
    form = page.locator("#earn-rule-form form")
    form.locator('input[name="code"]').fill("base-earn")
    form.locator('input[name="name"]').fill("消费积分")
    form.locator('button[type="submit"]').click()
    page.wait_for_function("(document.querySelector('#earn-rules')?.innerText || '').includes('消费积分')")

    # Points for a few members through the API, signed in with the console session.
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    listed = page.request.get(server + "/api/v1/members?limit=6")
    assert listed.ok, listed.text()
    member_ids = [m["id"] for m in listed.json()["items"]]
    for i, member_id in enumerate(member_ids):
        granted = page.request.post(
            f"{server}/api/v1/members/{member_id}/points/grant",
            headers={"X-CSRF-Token": csrf},
            data={
                "idempotency_key": f"browser-grant-{i}",
                "point_type": "points",
                "amount": 1000 * (i + 1),
                "reason": "开业活动",
                "funded_by": "store" if i % 2 else "brand",
            },
        )
        assert granted.ok, granted.text()

    page.goto(server + "/console/points/liability")
    page.wait_for_selector("#liability-chart canvas, #liability-chart svg")
    page.wait_for_selector("#expiring-chart canvas, #expiring-chart svg")
    assert "¥210.00" in page.locator("#liability-value").inner_text()
    page.wait_for_timeout(800)  # let the bars finish their entry animation
    page.screenshot(path=str(tmp_path / "console-points-liability.png"), full_page=True)
    if shots := _screenshot_dir():
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "console-points-liability.png"), full_page=True)

    # The tier programme and two levels through the tiers page's forms (prefilled with examples).
    page.goto(server + "/console/tiers")
    page.locator('#tier-program-form button[type="submit"]').click()
    page.wait_for_function("!(document.querySelector('#tier-program')?.innerText || '').includes('尚未')")
    for code, zh, en in (("base", "普卡", "Classic"), ("silver", "银卡", "Silver")):
        form = page.locator("#tier-level-form form")
        form.locator('input[name="code"]').fill(code)
        form.locator('input[name="name_zh"]').fill(zh)
        form.locator('input[name="name_en"]').fill(en)
        form.locator('button[type="submit"]').click()
        page.wait_for_function(
            "(text) => (document.querySelector('#tier-levels')?.innerText || '').includes(text)", arg=zh
        )

    # A week of daily snapshots, with a few members raised to silver half way.
    url = live_console.database_url
    today = datetime.now(UTC).date()
    _take_tier_snapshots(url, BRAND, [today - timedelta(days=d) for d in range(6, 2, -1)])
    for member_id in member_ids[:3]:
        raised = page.request.post(
            f"{server}/api/v1/members/{member_id}/tier/override",
            headers={"X-CSRF-Token": csrf},
            data={"level_code": "silver", "reason": "门店活动"},
        )
        assert raised.ok, raised.text()
    _take_tier_snapshots(url, BRAND, [today - timedelta(days=d) for d in range(2, -1, -1)])

    page.goto(server + "/console/tiers")
    page.wait_for_selector("#tier-distribution-chart canvas, #tier-distribution-chart svg")
    assert "银卡" in page.locator("#tier-levels").inner_text()
    page.wait_for_timeout(800)
    page.screenshot(path=str(tmp_path / "console-tiers.png"), full_page=True)
    if shots := _screenshot_dir():
        page.screenshot(path=str(shots / "console-tiers.png"), full_page=True)

    # The member's loyalty section loads the tier and the paid plan into itself.
    page.goto(f"{server}/console/members/{member_ids[0]}")
    page.wait_for_function("(document.querySelector('#member-tier-level')?.innerText || '').includes('银卡')")
    page.wait_for_selector("#tier-changes")
    assert "门店活动" in page.locator("#tier-changes").inner_text()
    page.wait_for_selector("#loyalty-paid:not([hx-get])")
    page.locator("#loyalty").screenshot(path=str(tmp_path / "console-member-loyalty.png"))
    assert (tmp_path / "console-points-liability.png").stat().st_size > 0
    assert (tmp_path / "console-tiers.png").stat().st_size > 0
