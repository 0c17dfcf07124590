"""Console pages for brand set-up: custom-field definitions and API keys.

Handlers call the custom-field verbs of ``members.field_definitions`` and the API-key verbs of
``auth.service``; permission checks are the services' own (plus the page dependency, so read-only
roles get a 403 page on writes and see no write buttons). No queries or business rules here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.auth import service as auth
from huiyuan.auth.permissions import PERMISSIONS
from huiyuan.console.deps import Console, requires
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit.errors import Conflict, ValidationFailed, field_error
from huiyuan.members import field_definitions
from huiyuan.members.custom_field_schemas import CustomFieldCreate
from huiyuan.members.custom_fields import FIELD_TYPES

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("members:read")]
KeyManager = Annotated[Console, requires("keys:manage")]
FieldWriter = Annotated[Console, requires("custom_fields:write")]


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
            raise ValidationFailed("A name is required.", errors=[field_error("name", "required")])
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


def _fields_page(
    request: Request,
    console: Console,
    *,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    definitions = (
        field_definitions.list_fields(console.session, actor=console.principal, include_retired=True)
        if console.brand_id is not None
        else []
    )
    return render(
        request,
        "custom_fields.html",
        {
            "definitions": definitions,
            "errors": errors or [],
            "form": form or {},
            "field_types": FIELD_TYPES,
            "can_write": console.can("custom_fields:write"),
        },
        status=status,
    )


@router.get("/console/custom-fields")
def custom_fields_page(request: Request, console: Reader) -> Response:
    return _fields_page(request, console)


def _bound(raw: str) -> str | None:
    return raw.strip() or None


@router.post("/console/custom-fields")
def define_field(
    request: Request,
    console: FieldWriter,
    key: Annotated[str, Form(max_length=64)] = "",
    label_zh: Annotated[str, Form(max_length=120)] = "",
    label_en: Annotated[str, Form(max_length=120)] = "",
    type: Annotated[str, Form(max_length=16)] = "string",
    required: Annotated[str, Form(max_length=5)] = "",
    unique: Annotated[str, Form(max_length=5)] = "",
    options: Annotated[str, Form(max_length=20_000)] = "",
    min: Annotated[str, Form(max_length=40)] = "",
    max: Annotated[str, Form(max_length=40)] = "",
    pattern: Annotated[str, Form(max_length=300)] = "",
    default: Annotated[str, Form(max_length=300)] = "",
    position: Annotated[str, Form(max_length=8)] = "0",
) -> Response:
    form = dict(locals())
    form.pop("request")
    form.pop("console")
    try:
        data = CustomFieldCreate.model_validate(
            {
                "key": key.strip(),
                "labels": {"zh": label_zh, "en": label_en},
                "type": type,
                "required": bool(required),
                "unique": bool(unique),
                "options": [o.strip() for o in options.splitlines() if o.strip()],
                "min": _bound(min),
                "max": _bound(max),
                "pattern": pattern.strip() or None,
                "default": default.strip() or None,
                "position": int(position) if position.strip().isdigit() else 0,
            }
        )
        field_definitions.define_field(console.session, actor=console.principal, data=data)
    except ValidationError as exc:
        errors = [field_error(".".join(str(p) for p in e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        return _fields_page(request, console, errors=errors, form=form, status=422)
    except (ValidationFailed, Conflict) as exc:
        console.session.rollback()
        errors = exc.errors or [{"message": exc.detail}]
        return _fields_page(request, console, errors=errors, form=form, status=exc.status)
    return RedirectResponse("/console/custom-fields", status_code=303)


@router.post("/console/custom-fields/{key}/retire")
def retire_field(key: str, console: FieldWriter) -> Response:
    field_definitions.retire_field(console.session, actor=console.principal, key=key)
    return RedirectResponse("/console/custom-fields", status_code=303)


@router.post("/console/custom-fields/{key}/reactivate")
def reactivate_field(key: str, console: FieldWriter) -> Response:
    field_definitions.reactivate_field(console.session, actor=console.principal, key=key)
    return RedirectResponse("/console/custom-fields", status_code=303)
