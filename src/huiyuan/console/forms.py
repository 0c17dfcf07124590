"""Form helpers shared by the console pages: the field errors a failed form shows and the inputs
to mark invalid, JSON documents typed into text areas (parsed and shown back), the answer after a
successful form and the status of a failed one; and, for the pages that take times, amounts and
counts typed by hand (benefits, wallet, shared point programmes), inputs left empty as "not set",
``datetime-local`` inputs read in the brand's time zone, whole numbers and a period of local days.
Parsing only as far as a browser sends strings; no queries or business rules here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from huiyuan.console.deps import Console
from huiyuan.console.web import is_htmx
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, ValidationFailed, field_error


def form_errors(exc: ValidationError | AppError) -> list[dict[str, Any]]:
    """The field errors of a failed validation (pydantic's or a service's), one list for the form."""
    if isinstance(exc, ValidationError):
        return [field_error(".".join(str(p) for p in e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
    return exc.errors or [{"field": "", "message": exc.detail, "code": exc.code}]


def invalid_fields(
    errors: Iterable[dict[str, Any]], to_input: Callable[[str], str] | None = None
) -> set[str]:
    """Names of the inputs to mark invalid: by default the first segment of each error's field."""
    fields = (str(e.get("field", "")) for e in errors)
    return {to_input(f) if to_input else f.split(".")[0] for f in fields}


class JsonFields:
    """Parses the JSON text areas of one form, collecting every malformed one before failing."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def parse(self, raw: str, field: str, *, shape: type, empty: Any) -> Any:
        if not raw.strip():
            return empty
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.errors.append(field_error(field, f"not valid JSON: {exc.msg}", "json"))
            return empty
        if not isinstance(value, shape):
            kind = "a JSON object" if shape is dict else "a JSON array"
            self.errors.append(field_error(field, f"must be {kind}", "json"))
            return empty
        return value

    def check(self) -> None:
        if self.errors:
            raise ValidationFailed("Some fields are not valid JSON.", errors=self.errors)


def pretty(document: Any) -> str:
    """A stored JSON document as the text area shows it (empty for none)."""
    if document is None or document == []:
        return ""
    return json.dumps(document, ensure_ascii=False)


def done(request: Request, target: str) -> Response:
    """After a successful form: a fresh page, so the new or changed row shows in the list."""
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def failure_status(exc: ValidationError | AppError) -> int:
    return exc.status if isinstance(exc, AppError) else 422


def present(values: dict[str, str]) -> dict[str, str]:
    """Inputs left empty mean "not set" (the default), not an empty value."""
    return {k: v.strip() for k, v in values.items() if v.strip()}


def local_datetime(raw: str, field: str, zone: str, errors: list[dict[str, Any]]) -> datetime | None:
    """A ``datetime-local`` input read in the brand's time zone (an explicit offset is kept)."""
    if not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        errors.append(field_error(field, "not a date and time (YYYY-MM-DDTHH:MM)", "datetime"))
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(zone))


def local_input(value: datetime | None, zone: str) -> str:
    """A stored time as a ``datetime-local`` input shows it (brand time, to the minute)."""
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M") if value else ""


def whole_number(raw: str, field: str, errors: list[dict[str, Any]]) -> int | None:
    """An optional whole number typed into a form."""
    if not raw.strip():
        return None
    if not raw.strip().isdigit():
        errors.append(field_error(field, "a whole number", "int"))
        return None
    return int(raw.strip())


def check(errors: list[dict[str, Any]]) -> None:
    if errors:
        raise ValidationFailed("Some fields are not valid.", errors=errors)


def span(console: Console, start_day: date | None, end_day: date | None) -> dict[str, Any]:
    """Local days ``from``–``to`` (both included; this month so far by default) as instants: local
    midnight of ``from`` up to local midnight after ``to``."""
    zone = ZoneInfo(console.timezone())
    today = utcnow().astimezone(zone).date()
    first = start_day or today.replace(day=1)
    last = end_day or today
    return {
        "from": first,
        "to": last,
        "start": datetime.combine(first, time(), tzinfo=zone),
        "end": datetime.combine(last + timedelta(days=1), time(), tzinfo=zone),
    }


def problems(exc: ValidationError | AppError) -> list[dict[str, Any]]:
    """What a failed form shows: the field errors, led by the service's own sentence when it refused
    for a reason of its own (a full slot, a used code) rather than for malformed fields."""
    errors = form_errors(exc)
    if isinstance(exc, AppError) and not isinstance(exc, ValidationFailed) and exc.errors:
        return [field_error("", exc.detail, exc.code), *errors]
    return errors
