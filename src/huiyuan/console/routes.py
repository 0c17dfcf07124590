"""The console's entry routes: sign in and out, language and brand switch, dashboard, static files.

Handlers are thin: they call the auth, tenancy and members services (through the console
dependencies) and render templates. The page groups live beside this module (``pages_members``,
``pages_admin``, ``pages_imports``) and are included into the one ``router`` registered in
``huiyuan.routes``. No queries or business rules here.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from huiyuan.auth import service as auth
from huiyuan.auth.deps import SESSION_COOKIE, check_rate
from huiyuan.console import (
    pages_admin,
    pages_analyses,
    pages_analytics,
    pages_attribution,
    pages_benefit_cards,
    pages_benefit_desk,
    pages_benefits,
    pages_clv,
    pages_coupons,
    pages_event_analysis,
    pages_events,
    pages_funnel,
    pages_heatmap,
    pages_imports,
    pages_insights,
    pages_members,
    pages_merchants,
    pages_oneid,
    pages_paid,
    pages_paths,
    pages_points,
    pages_profile,
    pages_programs,
    pages_retention,
    pages_tiers,
    pages_wallet,
)
from huiyuan.console.deps import Console, ConsoleDep, requires
from huiyuan.console.i18n import LANG_COOKIE, LANGUAGES, choose_language, translate
from huiyuan.console.repository import DashboardRepository
from huiyuan.console.web import (
    STATIC_DIR,
    ConsoleRoute,
    render,
    safe_next,
    vendor_file,
)
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import NotFound, RateLimited, Unauthenticated
from huiyuan.kit.web import SessionDep
from huiyuan.members.models import ENROLL_CHANNELS, MEMBER_STATUSES
from huiyuan.settings import get_settings
from huiyuan.tenancy.repository import TenancyRepository

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("members:read")]
LOGIN_CSRF_COOKIE = "hy_login_csrf"
CHART_MONTHS = 12


# -- static files ----------------------------------------------------------------------------------


@router.get("/static/console/{name}")
def console_static(name: str) -> Response:
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR.resolve() or not path.is_file():
        raise NotFound("No such file.")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/static/vendor/{name}")
def vendor_static(name: str) -> Response:
    path = vendor_file(name)
    if path is None or not path.is_file():
        raise NotFound("Vendor asset not installed; run `make assets`.")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


# -- sign in / out ---------------------------------------------------------------------------------


def _login_page(
    request: Request, *, next_url: str, error: str | None = None, status: int = 200, username: str = ""
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next": safe_next(next_url), "error": error, "login_csrf": token, "username": username},
        status=status,
    )
    # Double-submit token: a page on another site cannot read it, so it cannot post a login for us.
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=get_settings().session_cookie_secure,
        path="/console/login",
    )
    return response


@router.get("/console/login")
def login_form(request: Request, next: str = "/console") -> Response:
    return _login_page(request, next_url=next)


@router.post("/console/login")
def login_submit(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=80)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    settings = get_settings()
    lang = choose_language(request.cookies.get(LANG_COOKIE))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_page(
            request, next_url=next, error=translate(lang, "login.expired"), status=403, username=username
        )
    client_ip = request.client.host if request.client else "unknown"
    try:
        check_rate(f"console-login:ip:{client_ip}", settings.login_rate_limit)
        check_rate(f"console-login:user:{username.strip().lower()}", settings.login_rate_limit)
    except RateLimited as exc:
        response = _login_page(
            request, next_url=next, error=translate(lang, "login.throttled"), status=429, username=username
        )
        response.headers.update(exc.headers)
        return response
    try:
        user = auth.check_password(session, username.strip(), password)
    except Unauthenticated:
        return _login_page(
            request, next_url=next, error=translate(lang, "login.failed"), status=401, username=username
        )
    opened = auth.open_session(session, user)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=settings.session_max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=settings.session_cookie_secure,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/console/logout")
def logout(request: Request, console: ConsoleDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth.close_session(console.session, token)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- language and brand ----------------------------------------------------------------------------


@router.get("/console/lang")
def switch_language(to: str, next: str = "/console") -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    if to in LANGUAGES:
        response.set_cookie(LANG_COOKIE, to, max_age=365 * 24 * 3600, samesite="lax", path="/")
    return response


@router.post("/console/brand")
def switch_brand(
    console: ConsoleDep,
    brand_id: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console",
) -> Response:
    target = int(brand_id) if brand_id.strip().isdigit() else None
    auth.switch_brand(
        console.session, actor=console.principal, console_session_id=console.record.id, brand_id=target
    )
    return RedirectResponse(safe_next(next), status_code=303)


# -- dashboard -------------------------------------------------------------------------------------


@router.get("/console")
def dashboard(request: Request, console: Reader) -> Response:
    counts = DashboardRepository(console.session).status_counts()
    return render(
        request,
        "dashboard.html",
        {
            "counts": [(s, counts.get(s, 0)) for s in MEMBER_STATUSES],
            "total": sum(counts.values()),
        },
    )


def _last_months(now: datetime, timezone: str, n: int) -> list[str]:
    local = now.astimezone(ZoneInfo(timezone))
    year, month = local.year, local.month
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def _chart_timezone(console: Console) -> str:
    if console.brand_id is not None:
        return TenancyRepository(console.session).brand(console.brand_id).timezone
    return get_settings().default_timezone


@router.get("/console/dashboard/enrollments.json")
def enrollments_chart(console: Reader) -> Response:
    """Chart data for ECharts: months on the x axis, one stacked bar series per channel."""
    now = utcnow()
    timezone = _chart_timezone(console)
    months = _last_months(now, timezone, CHART_MONTHS)
    first = datetime.fromisoformat(months[0] + "-01T00:00").replace(tzinfo=ZoneInfo(timezone))
    rows = DashboardRepository(console.session).enrollments_by_month(since=first, timezone=timezone, now=now)
    by_channel: dict[str, dict[str, int]] = {}
    for month, channel, count in rows:
        by_channel.setdefault(channel, {})[month] = count
    order = [c for c in ENROLL_CHANNELS if c in by_channel] + sorted(set(by_channel) - set(ENROLL_CHANNELS))
    series = [
        {
            "channel": c,
            "name": translate(console.lang, f"channel.{c}"),
            "data": [by_channel[c].get(m, 0) for m in months],
        }
        for c in order
    ]
    return JSONResponse(
        {"title": translate(console.lang, "dashboard.chart_title"), "months": months, "series": series}
    )


router.include_router(pages_members.router)
router.include_router(pages_admin.router)
router.include_router(pages_imports.router)
router.include_router(pages_points.router)
router.include_router(pages_merchants.router)
router.include_router(pages_programs.router)
router.include_router(pages_tiers.router)
router.include_router(pages_paid.router)
router.include_router(pages_coupons.router)
router.include_router(pages_benefits.router)
router.include_router(pages_benefit_desk.router)
router.include_router(pages_benefit_cards.router)
router.include_router(pages_wallet.router)
router.include_router(pages_analytics.router)
router.include_router(pages_analyses.router)
router.include_router(pages_funnel.router)
router.include_router(pages_retention.router)
router.include_router(pages_clv.router)
router.include_router(pages_insights.router)
router.include_router(pages_paths.router)
router.include_router(pages_event_analysis.router)
router.include_router(pages_attribution.router)
router.include_router(pages_heatmap.router)
router.include_router(pages_events.router)
router.include_router(pages_oneid.router)
router.include_router(pages_profile.router)
