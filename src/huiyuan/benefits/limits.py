"""The calendar arithmetic of usage limits, as pure functions of UTC instants and the brand's zone.

* A period limit counts uses in the brand-local day, ISO week (Monday 00:00) or calendar month
  that contains the moment of use (for an appointment: the slot's start).
* A time window admits an instant when its local weekday is one of the window's days and its local
  time is in ``[start, end)``; an appointment slot must fit inside one window of its start's day.
* Slots start on multiples of ``slot_minutes`` counted from local midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from huiyuan.benefits.schemas import AppointmentRules, TimeWindow, UsageLimits


def parse_limits(raw: dict[str, object] | None) -> UsageLimits:
    return UsageLimits.model_validate(raw or {})


def parse_appointment(raw: dict[str, object] | None) -> AppointmentRules:
    return AppointmentRules.model_validate(raw or {})


def _local_midnight(day: datetime, zone: ZoneInfo) -> datetime:
    return datetime.combine(day.date(), time(0), tzinfo=zone)


def period_bounds(period: str, at: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC ``[start, end)`` of the brand-local day, week or month containing ``at``."""
    local = at.astimezone(zone)
    if period == "day":
        start = _local_midnight(local, zone)
        end = _local_midnight(local + timedelta(days=1), zone)
    elif period == "week":
        monday = local - timedelta(days=local.isoweekday() - 1)
        start = _local_midnight(monday, zone)
        end = _local_midnight(monday + timedelta(days=7), zone)
    elif period == "month":
        first = local.replace(day=1)
        start = _local_midnight(first, zone)
        end = _local_midnight(first + relativedelta(months=1), zone)
    else:  # pragma: no cover - schemas allow only the three
        raise ValueError(f"unknown period {period!r}")
    return start.astimezone(UTC), end.astimezone(UTC)


def in_window(windows: list[TimeWindow], at: datetime, zone: ZoneInfo) -> bool:
    """Whether ``at`` falls in one of the windows (no windows: any time)."""
    if not windows:
        return True
    local = at.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    return any(local.isoweekday() in w.days and w.start <= clock < w.end for w in windows)


def slot_in_window(windows: list[TimeWindow], start: datetime, end: datetime, zone: ZoneInfo) -> bool:
    """Whether the slot ``[start, end)`` lies inside one window of its start's local day."""
    if not windows:
        return True
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    if local_end.date() != local_start.date() and local_end.time() != time(0):
        return False
    begin = local_start.time().replace(tzinfo=None)
    finish = local_end.time().replace(tzinfo=None) if local_end.date() == local_start.date() else time.max
    return any(local_start.isoweekday() in w.days and w.start <= begin and finish <= w.end for w in windows)


def is_slot_start(at: datetime, slot_minutes: int, zone: ZoneInfo) -> bool:
    local = at.astimezone(zone)
    if local.second or local.microsecond:
        return False
    return (local.hour * 60 + local.minute) % slot_minutes == 0


def describe_window(w: TimeWindow) -> str:
    days = ",".join(str(d) for d in w.days)
    return f"days {days} {w.start.strftime('%H:%M')}–{w.end.strftime('%H:%M')}"
