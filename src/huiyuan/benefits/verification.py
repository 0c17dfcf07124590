"""Using an entitlement: one-time scan codes, the verification desk (scan, manual, identity check)
and the one core every verified use goes through (appointments call it too).

Policies:

* **Scan codes.** A member asks for a code for one entitlement; it is a signed token (itsdangerous,
  the brand's secret, checked against the injected clock) naming a ``benefit_scan_codes`` row and
  its random nonce, valid for ``SCAN_CODE_TTL_SECONDS``. Staff submit it; the row is spent with a
  conditional ``UPDATE … WHERE used_at IS NULL AND expires_at > now``, so of any number of
  concurrent submissions exactly one proceeds, and ``benefit_usages.scan_code_id`` is unique as well.
  A code whose use fails (a limit, an expired entitlement) is not spent: the whole verification
  rolls back.
* **Manual** verification needs a note; **identity check** an ID reference, of which only the last
  four characters are kept (no full ID numbers at rest). The method must be the definition's.
* **Every use** (``record_use``): the entitlement must be active and inside its validity; the
  moment must be inside the definition's time windows; the member's uses of the definition in the
  current day / week / month must be below each period limit; then one use is taken with a
  conditional ``UPDATE … WHERE remaining − reserved ≥ 1``. The period counts are made exact by
  queueing on ``benefit-use:{member}:{definition}`` first (PostgreSQL advisory lock; SQLite writers
  are serialised). An appointment's use was checked against windows and limits when it was booked
  and is taken from its reservation.
* Staff verifying must belong to the entitlement's brand (a scan code of another brand is
  answered like garbage, so nothing about it leaks).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from huiyuan.benefits.entitlements import add_event, get_entitlement, shown_status
from huiyuan.benefits.limits import describe_window, in_window, parse_limits, period_bounds
from huiyuan.benefits.models import BenefitDefinition, BenefitScanCode, BenefitUsage, MemberBenefit
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import AppError, Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit
from huiyuan.settings import get_settings

SCAN_CODE_TTL_SECONDS = 180
_SALT = "benefit-scan-code"


class BenefitUnavailable(Conflict):
    code = "benefit-unavailable"
    title = "The entitlement cannot be used"


class OutsideTimeWindow(Conflict):
    code = "benefit-outside-window"
    title = "The benefit cannot be used at this time"


class PeriodLimitReached(Conflict):
    code = "benefit-period-limit"
    title = "The member has used this benefit as often as allowed in this period"


class WrongMethod(Conflict):
    code = "benefit-wrong-method"
    title = "This benefit is verified another way"


class ScanCodeInvalid(AppError):
    status = 422
    code = "benefit-code-invalid"
    title = "The code is not valid"


class ScanCodeExpired(AppError):
    status = 422
    code = "benefit-code-expired"
    title = "The code has expired; ask the member to refresh it"


class ScanCodeUsed(Conflict):
    code = "benefit-code-used"
    title = "The code was already used"


class _ClockSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(utcnow().timestamp())


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret_key, salt=_SALT, signer=_ClockSigner)


@dataclass(frozen=True)
class ScanCode:
    member_benefit_id: int
    token: str
    expires_at: datetime


@dataclass
class UseResult:
    usage: BenefitUsage
    entitlement: MemberBenefit


def _definition(session: Session, mb: MemberBenefit) -> BenefitDefinition:
    d = BenefitRepository(session).definition(mb.definition_id)
    assert d is not None  # definitions are never deleted
    return d


def require_usable(mb: MemberBenefit, now: datetime, *, from_reservation: bool = False) -> None:
    status = shown_status(mb, now)
    if status != "active":
        raise BenefitUnavailable(f"The entitlement is {status}.", reason=status)
    if mb.valid_from > now:
        raise BenefitUnavailable("The entitlement is not valid yet.", reason="not-started")
    if not from_reservation and mb.remaining is not None and mb.remaining - mb.reserved < 1:
        raise BenefitUnavailable("No use is left (or every use left is booked).", reason="no-uses-left")


def _require_method(d: BenefitDefinition, *methods: str) -> None:
    if d.verification not in methods:
        raise WrongMethod(f"Benefit '{d.code}' is verified by {d.verification}.", verification=d.verification)


def issue_scan_code(
    session: Session, *, actor: Principal, member_id: int, member_benefit_id: int
) -> ScanCode:
    """A fresh one-time code for one of the member's own scan entitlements."""
    mb = get_entitlement(session, member_benefit_id, member_id=member_id)
    d = _definition(session, mb)
    _require_method(d, "scan")
    now = utcnow()
    require_usable(mb, now)
    code = BenefitScanCode(
        brand_id=mb.brand_id,
        member_benefit_id=mb.id,
        member_id=mb.member_id,
        nonce=secrets.token_urlsafe(12),
        expires_at=now.replace(microsecond=0) + timedelta(seconds=SCAN_CODE_TTL_SECONDS),
        created_at=now,
    )
    session.add(code)
    session.flush()
    token = _serializer().dumps({"b": mb.brand_id, "c": code.id, "n": code.nonce})
    assert isinstance(token, str)
    return ScanCode(member_benefit_id=mb.id, token=token, expires_at=code.expires_at)


def _read_token(token: str, brand_id: int) -> tuple[int, str]:
    serializer = _serializer()
    try:
        data = serializer.loads(token, max_age=SCAN_CODE_TTL_SECONDS)
    except SignatureExpired as exc:
        stale = serializer.load_payload(exc.payload) if exc.payload is not None else None
        if isinstance(stale, dict) and stale.get("b") == brand_id:
            raise ScanCodeExpired()
        raise ScanCodeInvalid()
    except BadSignature:
        raise ScanCodeInvalid()
    if not isinstance(data, dict) or data.get("b") != brand_id or not isinstance(data.get("c"), int):
        raise ScanCodeInvalid()
    return int(data["c"]), str(data.get("n"))


def verify_scan(
    session: Session,
    *,
    actor: Principal,
    token: str,
    store_id: int | None = None,
    minutes: int | None = None,
    note: str | None = None,
) -> UseResult:
    """Staff scanned a member's code: spend the code and use one unit of its entitlement."""
    brand_id = actor.scope.require_brand()
    code_id, nonce = _read_token(token, brand_id)
    repo = BenefitRepository(session)
    code = repo.scan_code(code_id)
    if code is None or code.nonce != nonce:
        raise ScanCodeInvalid()
    now = utcnow()
    if not repo.mark_code_used(code_id, nonce, now):
        fresh = repo.scan_code(code_id, fresh=True)
        if fresh is not None and fresh.used_at is None:
            raise ScanCodeExpired()
        raise ScanCodeUsed("This code was already used; ask the member for a new one.")
    mb = get_entitlement(session, code.member_benefit_id)
    d = _definition(session, mb)
    _require_method(d, "scan")
    return record_use(
        session,
        actor=actor,
        mb=mb,
        definition=d,
        method="scan",
        now=now,
        store_id=store_id,
        minutes=minutes,
        note=note,
        scan_code_id=code.id,
    )


def read_scan_code(session: Session, *, actor: Principal, token: str) -> MemberBenefit:
    """The entitlement a scanned code names, without spending the code (the desk shows it first)."""
    code_id, nonce = _read_token(token, actor.scope.require_brand())
    code = BenefitRepository(session).scan_code(code_id)
    if code is None or code.nonce != nonce:
        raise ScanCodeInvalid()
    if code.used_at is not None:
        raise ScanCodeUsed("This code was already used; ask the member for a new one.")
    if code.expires_at <= utcnow():
        raise ScanCodeExpired()
    return get_entitlement(session, code.member_benefit_id)


def _masked_reference(value: str) -> str:
    value = value.strip()
    return "*" * max(0, len(value) - 4) + value[-4:]


def verify_at_desk(
    session: Session,
    *,
    actor: Principal,
    member_benefit_id: int,
    note: str | None = None,
    id_reference: str | None = None,
    reference: str | None = None,
    store_id: int | None = None,
    minutes: int | None = None,
) -> UseResult:
    """Staff verify a manual or identity-check entitlement (a partner confirms a third-party one)."""
    mb = get_entitlement(session, member_benefit_id)
    d = _definition(session, mb)
    _require_method(d, "manual", "identity_check")
    if d.verification == "manual" and not note and not reference:
        raise ValidationFailed(
            "Say what was checked.",
            errors=[field_error("note", "required for manual verification", "required")],
        )
    if d.verification == "identity_check":
        if not id_reference:
            raise ValidationFailed(
                "Record the identity document checked.",
                errors=[field_error("id_reference", "required for an identity check", "required")],
            )
        reference = _masked_reference(id_reference)
    return record_use(
        session,
        actor=actor,
        mb=mb,
        definition=d,
        method=d.verification or "manual",
        now=utcnow(),
        store_id=store_id,
        minutes=minutes,
        note=note,
        reference=reference,
    )


def _check_limits(session: Session, mb: MemberBenefit, d: BenefitDefinition, now: datetime) -> None:
    limits = parse_limits(d.limits)
    zone = BenefitRepository(session).zone(mb.brand_id)
    if not in_window(limits.time_windows, now, zone):
        raise OutsideTimeWindow(
            "The benefit can be used only in its time windows.",
            windows=[describe_window(w) for w in limits.time_windows],
        )
    repo = BenefitRepository(session)
    for limit in limits.per_period:
        start, end = period_bounds(limit.period, now, zone)
        if repo.uses_between(mb.member_id, d.id, start, end) >= limit.count:
            raise PeriodLimitReached(
                f"At most {limit.count} use(s) per {limit.period}.", period=limit.period, limit=limit.count
            )


def record_use(
    session: Session,
    *,
    actor: Principal,
    mb: MemberBenefit,
    definition: BenefitDefinition,
    method: str,
    now: datetime,
    store_id: int | None = None,
    minutes: int | None = None,
    note: str | None = None,
    reference: str | None = None,
    scan_code_id: int | None = None,
    appointment_id: int | None = None,
) -> UseResult:
    """Use one unit of an entitlement (the core of every verification)."""
    from_reservation = appointment_id is not None
    repo = BenefitRepository(session)
    require_store(session, store_id)
    advisory_lock(session, f"benefit-use:{mb.brand_id}:{mb.member_id}:{definition.id}")
    mb = repo.refresh(mb)
    require_usable(mb, now, from_reservation=from_reservation)
    if not from_reservation:
        _check_limits(session, mb, definition, now)
    duration = parse_limits(definition.limits).duration_minutes
    if minutes is not None and duration is not None and minutes > duration:
        raise ValidationFailed(
            f"One use covers at most {duration} minutes.",
            errors=[field_error("minutes", f"at most {duration}", "too-long")],
        )
    if not repo.take_use(mb.id, from_reservation=from_reservation):
        raise BenefitUnavailable("No use is left.", reason="no-uses-left")
    mb = repo.refresh(mb)
    if mb.remaining == 0:
        mb.status = "used_up"
    mb.updated_at = now
    usage = BenefitUsage(
        brand_id=mb.brand_id,
        member_benefit_id=mb.id,
        definition_id=definition.id,
        member_id=mb.member_id,
        method=method,
        used_at=now,
        minutes=minutes if minutes is not None else duration,
        store_id=store_id,
        reference=reference,
        note=note,
        scan_code_id=scan_code_id,
        appointment_id=appointment_id,
        unit_cost=definition.unit_cost,
        funded_by=definition.funded_by,
        served_by=definition.served_by,
        verified_by=actor.label[:200],
    )
    session.add(usage)
    session.flush()
    detail: dict[str, Any] = {"usage_id": usage.id, "method": method, "store_id": store_id}
    if appointment_id is not None:
        detail["appointment_id"] = appointment_id
    add_event(session, actor, mb, "verified", quantity=1, detail=detail, at=now)
    emit(
        session,
        type="benefit.verified",
        brand_id=mb.brand_id,
        aggregate_type="member_benefit",
        aggregate_id=mb.id,
        payload={
            "member_benefit_id": mb.id,
            "member_id": mb.member_id,
            "benefit": definition.code,
            "usage_id": usage.id,
            "method": method,
            "store_id": store_id,
            "remaining": mb.remaining,
            "unit_cost": str(definition.unit_cost),
            "funded_by": definition.funded_by,
            "served_by": definition.served_by,
        },
    )
    return UseResult(usage=usage, entitlement=mb)


def usage_list(
    session: Session,
    *,
    member_id: int | None,
    definition_id: int | None,
    member_benefit_id: int | None,
    after_id: int | None,
    limit: int,
) -> list[BenefitUsage]:
    return BenefitRepository(session).usages(
        member_id=member_id,
        definition_id=definition_id,
        member_benefit_id=member_benefit_id,
        after_id=after_id,
        limit=limit,
    )


def require_store(session: Session, store_id: int | None) -> None:
    """A store named at the desk must be one of the brand's."""
    if store_id is not None and not BenefitRepository(session).store_exists(store_id):
        raise NotFound(f"Store {store_id} was not found.")
