"""Who is using the console: the session cookie, CSRF on forms, the language, the permission checks.

Reuses ``huiyuan.auth.deps.get_principal`` (cookie path, CSRF check on unsafe methods, scope attached
to the request's database session exactly as for the API); this module only adds what a browser
needs: the CSRF token from a form field, a redirect to the login page instead of a 401, and the
console context handed to templates. Must not run queries of its own (it calls the auth
service).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from huiyuan.auth import service as auth
from huiyuan.auth.deps import SAFE_METHODS, SESSION_COOKIE, get_principal
from huiyuan.auth.models import ConsoleSession, ConsoleUser
from huiyuan.console.i18n import LANG_COOKIE, choose_language
from huiyuan.console.web import LoginRequired
from huiyuan.kit.errors import Unauthenticated
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings
from huiyuan.tenancy.models import Brand
from huiyuan.tenancy.repository import TenancyRepository

CSRF_FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def form_csrf(request: Request) -> None:
    """Hand a form's ``csrf_token`` field to ``get_principal`` (which checks it for unsafe methods)."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("content-type", "").startswith(FORM_TYPES):
        form = await request.form()
        token = form.get(CSRF_FIELD)
        if isinstance(token, str):
            request.state.csrf_form_token = token


@dataclass
class Console:
    """The signed-in console user as pages see them."""

    principal: Principal
    user: ConsoleUser
    record: ConsoleSession
    session: Session
    lang: str
    _brands: list[Brand] | None = field(default=None, repr=False)

    @property
    def csrf(self) -> str:
        return self.record.csrf_token

    @property
    def is_platform(self) -> bool:
        return self.user.brand_id is None

    @property
    def brand_id(self) -> int | None:
        return self.principal.scope.brand_id

    def can(self, permission: str) -> bool:
        return self.principal.has(permission)

    def require(self, permission: str) -> None:
        self.principal.require(permission)

    def brands(self) -> list[Brand]:
        """Brands this user may look at (all of them for platform users, for the switcher)."""
        if self._brands is None:
            self._brands = TenancyRepository(self.session).brands()
        return self._brands

    def timezone(self) -> str:
        """Business time zone for showing times: the brand's, or the platform default."""
        brand = next((b for b in self.brands() if b.id == self.brand_id), None)
        return brand.timezone if brand is not None else get_settings().default_timezone

    def brand_name(self) -> str | None:
        if self.brand_id is None:
            return None
        return next((b.name for b in self.brands() if b.id == self.brand_id), None)


def get_console(request: Request, session: SessionDep, _form: Annotated[None, Depends(form_csrf)]) -> Console:
    """The console user of this request, or a redirect to the login page."""
    request.state.db_session = session
    token = request.cookies.get(SESSION_COOKIE)
    # Resolve the user before get_principal narrows the session to a brand (platform users' rows
    # have no brand and would be filtered out then); holding them keeps them in the identity map,
    # so get_principal's own lookup finds them without querying the user again.
    resolved = auth.resolve_session(session, token) if token else None
    if resolved is None:
        raise LoginRequired()
    record, user = resolved
    try:
        principal = get_principal(request, session)
    except Unauthenticated:
        raise LoginRequired()
    if principal.kind != "user" or principal.id != user.id:
        raise LoginRequired()
    lang = choose_language(request.cookies.get(LANG_COOKIE), user.locale)
    request.state.lang = lang
    console = Console(principal=principal, user=user, record=record, session=session, lang=lang)
    request.state.console = console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def requires(permission: str):  # type: ignore[no-untyped-def]
    """Dependency factory: the console user after checking one permission (403 page otherwise)."""

    def dep(console: ConsoleDep) -> Console:
        console.require(permission)
        return console

    return Depends(dep)
