"""Form helpers of the console pages that take times, amounts and counts typed by hand (benefits,
wallet, shared point programmes): inputs left empty as "not set", ``datetime-local`` inputs read in
the brand's time zone, whole numbers, a period of local days, and the field errors a failed form
shows. Parsing only as far as a browser sends strings; no queries or business rules here.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from huiyuan.console.deps import Console
from huiyuan.console.pages_tiers import form_errors
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, ValidationFailed, field_error


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
