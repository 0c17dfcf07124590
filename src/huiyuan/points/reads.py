"""Read models of points: one member's balances, ledger lines and lots, and the brand's totals.

Owns the member lookup the points verbs share (``get_member``), a member's summary, entries and lots,
the brand's outstanding liability and the expiry outlook, counted in brand-local days. Nothing here
writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.points.config import list_point_types
from huiyuan.points.models import PointEntry, PointLot
from huiyuan.points.repository import EntryFilter, PointConfigRepository, PointQueryRepository
from huiyuan.points.schemas import (
    EntryOut,
    ExpiringDayOut,
    ExpiringOut,
    FunderLiabilityOut,
    LiabilityOut,
    LotOut,
    PointBalanceOut,
    PointsSummaryOut,
    StaffEntryOut,
    StaffLotOut,
    TypeLiabilityOut,
)
from huiyuan.settings import get_settings
from huiyuan.tenancy.repository import TenancyRepository

CENT = Decimal("0.01")
SOON_DAYS = (30, 90)
MAX_OUTLOOK_DAYS = 366


# -- time windows ----------------------------------------------------------------------------------


def _timezone(session: Session, brand_id: int | None) -> str:
    if brand_id is None:
        return get_settings().default_timezone
    return TenancyRepository(session).brand(brand_id).timezone


def _end_of_local_day(now: datetime, zone: ZoneInfo, days: int) -> datetime:
    """00:00 local after the ``days``-th local day counting today as the first: lots expiring by then
    have their last usable day within the window."""
    today = now.astimezone(zone).date()
    return datetime.combine(today + timedelta(days=days), time(), tzinfo=zone).astimezone(UTC)


def _last_usable_day(expires_at: datetime, zone: ZoneInfo) -> date:
    # Expiry instants are exclusive: a lot expiring at 00:00 local is last usable the day before.
    return (expires_at - timedelta(microseconds=1)).astimezone(zone).date()


# -- one member's points ---------------------------------------------------------------------------


def get_member(session: Session, member_id: int) -> Member:
    """The member in the caller's scope, or 404 (another brand's member is missing, too)."""
    member = PointQueryRepository(session).member(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def member_summary(session: Session, member_id: int) -> PointsSummaryOut:
    """The member's points per point type: buckets as of now and what expires within 30 and 90 days."""
    member = get_member(session, member_id)
    now = utcnow()
    zone = ZoneInfo(_timezone(session, member.brand_id))
    repo = PointQueryRepository(session)
    buckets = repo.lot_buckets(
        member.id,
        now=now,
        until_30d=_end_of_local_day(now, zone, SOON_DAYS[0]),
        until_90d=_end_of_local_day(now, zone, SOON_DAYS[1]),
    )
    accounts = {a.point_type_id: a for a in repo.accounts(member.id)}
    held: dict[int, dict[str, int]] = {}
    for b in buckets:
        row = held.setdefault(b.point_type_id, {"pending": 0, "active": 0, "frozen": 0, "e30": 0, "e90": 0})
        row[b.state] += b.remaining
        row["e30"] += b.expiring_30d
        row["e90"] += b.expiring_90d
    types = [
        pt
        for pt in list_point_types(session)
        if pt.brand_id == member.brand_id and (pt.status == "active" or pt.id in accounts)
    ]
    balances = []
    for pt in types:
        row = held.get(pt.id, {})
        account = accounts.get(pt.id)
        balances.append(
            PointBalanceOut(
                point_type=pt.code,
                name=pt.name,
                kind=pt.kind,
                available=row.get("active", 0),
                pending=row.get("pending", 0),
                frozen=row.get("frozen", 0),
                reserved=account.reserved if account else 0,
                debt=account.debt if account else 0,
                expiring_30d=row.get("e30", 0),
                expiring_90d=row.get("e90", 0),
                earned_total=account.earned_total if account else 0,
                spent_total=account.spent_total if account else 0,
                expired_total=account.expired_total if account else 0,
            )
        )
    return PointsSummaryOut(member_id=member.id, as_of=now, balances=balances)


def _type_id(session: Session, member: Member, code: str | None) -> int | None:
    if not code:
        return None
    pt = PointConfigRepository(session).type_by_code(code, brand_id=member.brand_id)
    return pt.id if pt is not None else -1  # an unknown type matches nothing


@dataclass
class EntryPage:
    rows: list[PointEntry]
    codes: dict[int, str]


@dataclass
class LotPage:
    rows: list[PointLot]
    codes: dict[int, str]


def _codes(session: Session, ids: set[int]) -> dict[int, str]:
    return {i: pt.code for i, pt in PointConfigRepository(session).types_by_id(ids).items()}


def list_entries(
    session: Session,
    member_id: int,
    *,
    point_type: str | None = None,
    kind: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    source_type: str | None = None,
    source_id: str | None = None,
    before_id: int | None,
    limit: int,
) -> EntryPage:
    """The member's ledger lines, newest first, with the point type codes they refer to."""
    member = get_member(session, member_id)
    filters = EntryFilter(
        point_type_id=_type_id(session, member, point_type),
        kind=kind,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        source_type=source_type,
        source_id=source_id,
    )
    rows = PointQueryRepository(session).entries(member.id, filters, before_id=before_id, limit=limit)
    return EntryPage(rows=rows, codes=_codes(session, {e.point_type_id for e in rows}))


def list_lots(
    session: Session,
    member_id: int,
    *,
    state: str | None = None,
    point_type: str | None = None,
    before_id: int | None,
    limit: int,
) -> LotPage:
    """The member's lots with their expiry, newest first."""
    member = get_member(session, member_id)
    rows = PointQueryRepository(session).lots(
        member.id,
        state=state,
        point_type_id=_type_id(session, member, point_type),
        before_id=before_id,
        limit=limit,
    )
    return LotPage(rows=rows, codes=_codes(session, {lot.point_type_id for lot in rows}))


def entry_out(entry: PointEntry, codes: Mapping[int, str], *, staff: bool) -> EntryOut:
    fields: dict[str, Any] = {
        "id": entry.id,
        "point_type": codes.get(entry.point_type_id, ""),
        "kind": entry.kind,
        "amount": entry.amount,
        "d_available": entry.d_available,
        "d_pending": entry.d_pending,
        "d_frozen": entry.d_frozen,
        "d_reserved": entry.d_reserved,
        "d_debt": entry.d_debt,
        "reason": entry.reason,
        "source_type": entry.source_type,
        "source_id": entry.source_id,
        "store_id": entry.store_id,
        "occurred_at": entry.occurred_at,
    }
    if not staff:
        return EntryOut(**fields)
    return StaffEntryOut(
        **fields,
        operation_id=entry.operation_id,
        reservation_id=entry.reservation_id,
        reverses_entry_id=entry.reverses_entry_id,
        actor=entry.actor,
    )


def lot_out(lot: PointLot, codes: Mapping[int, str], *, staff: bool) -> LotOut:
    fields: dict[str, Any] = {
        "id": lot.id,
        "point_type": codes.get(lot.point_type_id, ""),
        "amount": lot.amount,
        "remaining": lot.remaining,
        "state": lot.state,
        "earned_at": lot.earned_at,
        "activates_at": lot.activates_at,
        "expires_at": lot.expires_at,
        "nominal_expires_at": lot.nominal_expires_at,
        "source_type": lot.source_type,
        "source_id": lot.source_id,
        "store_id": lot.store_id,
    }
    if not staff:
        return LotOut(**fields)
    return StaffLotOut(
        **fields,
        funded_by=lot.funded_by,
        unit_value=lot.unit_value,
        rule_id=lot.rule_id,
        frozen_reason=lot.frozen_reason,
    )


# -- brand totals ----------------------------------------------------------------------------------


def _yuan(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def liability(session: Session) -> LiabilityOut:
    """Outstanding points at the fair value each lot was granted at, per point type and funder."""
    now = utcnow()
    repo = PointQueryRepository(session)
    per_type: dict[int, dict[str, list[Any]]] = {}
    reserved: dict[int, int] = {}
    for row in repo.outstanding(now=now):
        funder = per_type.setdefault(row.point_type_id, {}).setdefault(row.funded_by, [0, Decimal(0)])
        funder[0] += row.points
        funder[1] += row.unit_value * row.points
    for row in repo.reserved():
        funder = per_type.setdefault(row.point_type_id, {}).setdefault(row.funded_by, [0, Decimal(0)])
        funder[0] += row.points
        funder[1] += row.unit_value * row.points
        reserved[row.point_type_id] = reserved.get(row.point_type_id, 0) + row.points
    holders, total_holders = repo.holders(now=now)
    types = {pt.id: pt for pt in list_point_types(session)}
    for pt_id in per_type.keys() - types.keys():
        types.update(PointConfigRepository(session).types_by_id([pt_id]))
    lines = []
    for pt in sorted(types.values(), key=lambda p: p.id):
        funders = per_type.get(pt.id, {})
        by_funder = [
            FunderLiabilityOut(funded_by=name, points=n, value=_yuan(v))
            for name, (n, v) in sorted(funders.items())
        ]
        lines.append(
            TypeLiabilityOut(
                point_type=pt.code,
                name=pt.name,
                kind=pt.kind,
                points=sum(f.points for f in by_funder),
                reserved_points=reserved.get(pt.id, 0),
                value=_yuan(sum((v for _n, v in funders.values()), Decimal(0))),
                members=holders.get(pt.id, 0),
                by_funder=by_funder,
            )
        )
    return LiabilityOut(
        as_of=now,
        points=sum(line.points for line in lines),
        value=_yuan(sum((line.value for line in lines), Decimal(0))),
        members=total_holders,
        point_types=lines,
    )


def expiring(session: Session, *, actor: Principal, days: int, member_id: int | None = None) -> ExpiringOut:
    """Available points whose last usable day falls within the next ``days`` local days, per day."""
    if not 1 <= days <= MAX_OUTLOOK_DAYS:
        raise ValidationFailed(
            f"days must be between 1 and {MAX_OUTLOOK_DAYS}.",
            errors=[field_error("days", f"must be between 1 and {MAX_OUTLOOK_DAYS}", "out-of-range")],
        )
    brand_id = actor.scope.brand_id
    if member_id is not None:
        brand_id = get_member(session, member_id).brand_id
    tz = _timezone(session, brand_id)
    zone = ZoneInfo(tz)
    now = utcnow()
    rows = PointQueryRepository(session).expiring(
        now=now, until=_end_of_local_day(now, zone, days), member_id=member_id
    )
    codes = _codes(session, {pt_id for pt_id, _at, _n in rows})
    per_day: dict[date, dict[str, int]] = {}
    for pt_id, at, n in rows:
        day = per_day.setdefault(_last_usable_day(at, zone), {})
        day[codes[pt_id]] = day.get(codes[pt_id], 0) + n
    by_type: dict[str, int] = {}
    for counts in per_day.values():
        for code, n in counts.items():
            by_type[code] = by_type.get(code, 0) + n
    return ExpiringOut(
        as_of=now,
        days=days,
        timezone=tz,
        points=sum(by_type.values()),
        by_type=by_type,
        per_day=[
            ExpiringDayOut(date=d, points=sum(counts.values()), by_type=counts)
            for d, counts in sorted(per_day.items())
        ],
    )
