"""Console pages for brand set-up: custom-field definitions and API keys.

Handlers call the custom-field functions of ``members.custom_fields`` and the API-key verbs of
``auth.service``; permission checks are the services' own (plus the page dependency, so read-only
roles get a 403 page on writes and see no write buttons). No queries or business rules here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from huiyuan.auth import service as auth
from huiyuan.auth.permissions import PERMISSIONS
from huiyuan.console.deps import Console, requires
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit.errors import ValidationFailed
from huiyuan.members.repository import MemberRepository

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("members:read")]
KeyManager = Annotated[Console, requires("keys:manage")]


# -- API keys --------------------------------------------------------------------------------------


def _scope_choices(console: Console) -> list[str]:
    names = [p for p in PERMISSIONS if p != "brands:manage" or console.brand_id is None]
    return ["*", *names] if console.brand_id is None and console.can("*") else names


def _keys_page(
    request: Request,
    console: Console,
    *,
    issued: auth.IssuedKey | None = None,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "keys.html",
        {
            "keys": auth.list_api_keys(console.session),
            "scope_choices": _scope_choices(console),
            "issued": issued,
            "errors": errors or [],
            "brand_codes": {b.id: b.code for b in console.brands()},
        },
        status=status,
    )


@router.get("/console/keys")
def keys_page(request: Request, console: KeyManager) -> Response:
    return _keys_page(request, console)


@router.post("/console/keys")
def create_key(
    request: Request,
    console: KeyManager,
    name: Annotated[str, Form(max_length=120)] = "",
    scopes: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
) -> Response:
    try:
        if not name.strip():
            raise ValidationFailed("A name is required.", errors=[{"field": "name", "message": "required"}])
        issued = auth.create_api_key(
            console.session,
            actor=console.principal,
            name=name.strip(),
            scopes=scopes,
            brand_id=console.brand_id,
        )
    except ValidationFailed as exc:
        console.session.rollback()
        return _keys_page(request, console, errors=exc.errors or [{"message": exc.detail}], status=422)
    # The secret is shown on this response only; it is not stored anywhere in plaintext.
    return _keys_page(request, console, issued=issued)


@router.post("/console/keys/{key_id}/revoke")
def revoke_key(key_id: int, console: KeyManager) -> Response:
    auth.revoke_api_key(console.session, actor=console.principal, key_id=key_id)
    return RedirectResponse("/console/keys", status_code=303)


# -- custom-field definitions ----------------------------------------------------------------------


@router.get("/console/custom-fields")
def custom_fields_page(request: Request, console: Reader) -> Response:
    definitions = (
        MemberRepository(console.session).custom_definitions(console.brand_id, include_retired=True)
        if console.brand_id is not None
        else []
    )
    return render(
        request,
        "custom_fields.html",
        {"definitions": definitions, "errors": [], "form": {}, "can_write": False},
    )
