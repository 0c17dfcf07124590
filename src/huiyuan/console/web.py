"""Rendering for the console: the Jinja2 environment, page and fragment responses, the error pages and
the route class that turns expected failures into HTML instead of problem JSON.

Owns: how a template is found and rendered, where the vendor assets (HTMX, ECharts, installed from the
npm registry by the project setup) are looked up, and how ``AppError``s raised by services or
dependencies become a page (or, for HTMX requests, a fragment/redirect). Must not hold business rules
or queries.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from huiyuan.console.i18n import LANG_COOKIE, choose_language, t, t_opt, translate
from huiyuan.kit.errors import AppError
from huiyuan.kit.logging import get_logger
from huiyuan.settings import get_settings

log = get_logger("huiyuan.console")

CONSOLE_DIR = Path(__file__).parent
TEMPLATES_DIR = CONSOLE_DIR / "templates"
STATIC_DIR = CONSOLE_DIR / "static"

# The only vendor files the console serves: URL name -> path inside node_modules.
VENDOR_FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "echarts.min.js": "echarts/dist/echarts.min.js",
}


class LoginRequired(AppError):
    """No console session (or not a console user): the page answers with a redirect to the login."""

    status = 401
    code = "login-required"
    title = "Sign in to the console"


def vendor_dir() -> Path | None:
    """Where npm put the vendor assets: the ``console_assets_dir`` setting, else ``<project
    root>/node_modules``, else ``./node_modules``. ``None`` (and one warning) when none has them."""
    settings = get_settings()
    return _vendor_dir(settings.console_assets_dir, str(settings.project_root))


@lru_cache(maxsize=8)
def _vendor_dir(configured: str, project_root: str) -> Path | None:
    candidates = [Path(configured)] if configured else []
    candidates += [Path(project_root) / "node_modules", Path.cwd() / "node_modules"]
    for candidate in candidates:
        if all((candidate / rel).is_file() for rel in VENDOR_FILES.values()):
            return candidate.resolve()
    log.warning(
        "console vendor assets not found; pages work without charts and live updates",
        looked_in=[str(c) for c in candidates],
        fix="run `make assets` (npm install) or set HUIYUAN_CONSOLE_ASSETS_DIR",
    )
    return None


def vendor_file(name: str) -> Path | None:
    base = vendor_dir()
    rel = VENDOR_FILES.get(name)
    if base is None or rel is None:
        return None
    return base / rel


def _static_version() -> str:
    # Cache-busting for our own small files: their newest modification time.
    stamps = [int(p.stat().st_mtime) for p in STATIC_DIR.iterdir() if p.is_file()]
    return str(max(stamps, default=0))


@pass_context
def local_time(context: Context, value: datetime | None) -> str:
    """Jinja filter: a stored UTC time shown in the business time zone of the brand being viewed."""
    if value is None:
        return "—"
    console = context.get("console")
    zone = console.timezone() if console is not None else get_settings().default_timezone
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


@lru_cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["t"] = t
    env.globals["t_opt"] = t_opt
    env.globals["static_version"] = _static_version()
    env.filters["urlquote"] = lambda v: quote(str(v), safe="")
    env.filters["dt"] = local_time
    env.filters["d"] = lambda v: v.isoformat() if v else "—"
    # Thousands separators for counts and amounts ("53,873,123", "492,074.22").
    env.filters["num"] = lambda v: f"{v:,}" if v is not None else "—"
    return env


def request_language(request: Request) -> str:
    lang = getattr(request.state, "lang", None)
    return str(lang) if lang else choose_language(request.cookies.get(LANG_COOKIE))


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page or a fragment with the request's language and console context."""
    ctx: dict[str, Any] = {
        "request": request,
        "lang": request_language(request),
        "console": getattr(request.state, "console", None),
        "vendor_ok": vendor_dir() is not None,
    }
    ctx.update(context or {})
    html = environment().get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status, headers=headers)


def safe_next(value: str | None) -> str:
    """Only local console paths are followed after login (no open redirects)."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


def login_redirect(request: Request) -> Response:
    target = "/console/login?next=" + quote(safe_next(request.url.path + _query(request)), safe="")
    if is_htmx(request):
        # HTMX follows 3xx transparently and would swap the login page into a fragment.
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _query(request: Request) -> str:
    return ("?" + request.url.query) if request.url.query and request.method == "GET" else ""


def error_page(request: Request, status: int, detail: str, code: str) -> HTMLResponse:
    lang = request_language(request)
    title_key = {403: "error.403", 404: "error.404", 422: "error.422", 429: "error.429"}.get(
        status, "error.generic"
    )
    htmx = is_htmx(request)
    template = "_error_fragment.html" if htmx else "error.html"
    # Inside the target, not over it: the element stays for the next request (search, polling).
    headers = {"HX-Reswap": "innerHTML"} if htmx else None
    return render(
        request,
        template,
        # No console context: the error page must not touch the (rolled back) session again.
        {
            "status": status,
            "title": translate(lang, title_key),
            "detail": detail,
            "code": code,
            "console": None,
        },
        status=status,
        headers=headers,
    )


def _rollback(request: Request) -> None:
    # The request's session would commit after a handled error; nothing of a failed write may land.
    session = getattr(request.state, "db_session", None)
    if session is not None:
        session.rollback()


class ConsoleRoute(APIRoute):
    """Routes of the console: expected failures render as HTML (or HTMX redirects), not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                _rollback(request)
                return login_redirect(request)
            except AppError as exc:
                _rollback(request)
                return error_page(request, exc.status, exc.detail, exc.code)
            except RequestValidationError as exc:
                _rollback(request)
                fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors())
                return error_page(request, 422, fields or "invalid form", "validation-failed")

        return console_handler
