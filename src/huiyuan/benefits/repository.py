"""Every query of the benefit catalogue, entitlements, verification and bookings. Tenancy is applied
by the session's scope (``kit.db``); explicit ``brand_id`` conditions only say which brand a write
path works for (jobs may run platform-wide)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from huiyuan.benefits.models import (
    BenefitAppointment,
    BenefitDefinition,
    BenefitEvent,
    BenefitScanCode,
    BenefitUsage,
    MemberBenefit,
)
from huiyuan.members.models import Member
from huiyuan.tenancy.models import Brand, Store


class BenefitRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def zone(self, brand_id: int) -> ZoneInfo:
        """The brand's business time zone (limits, periods and slots are local)."""
        tz = self.session.scalar(select(Brand.timezone).where(Brand.id == brand_id))
        return ZoneInfo(tz or "Asia/Shanghai")

    def store_exists(self, store_id: int) -> bool:
        return self.session.scalar(select(Store.id).where(Store.id == store_id)) is not None

    # -- catalogue ---------------------------------------------------------------------------------

    def definition(self, definition_id: int) -> BenefitDefinition | None:
        return self.session.scalars(
            select(BenefitDefinition).where(BenefitDefinition.id == definition_id)
        ).one_or_none()

    def definition_by_code(self, brand_id: int, code: str) -> BenefitDefinition | None:
        stmt = select(BenefitDefinition).where(
            BenefitDefinition.brand_id == brand_id, BenefitDefinition.code == code
        )
        return self.session.scalars(stmt).one_or_none()

    def definitions_by_id(self, ids: set[int]) -> dict[int, BenefitDefinition]:
        if not ids:
            return {}
        stmt = select(BenefitDefinition).where(BenefitDefinition.id.in_(sorted(ids)))
        return {d.id: d for d in self.session.scalars(stmt)}

    def list_definitions(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        claimable: bool | None = None,
        after_id: int | None = None,
        limit: int = 50,
    ) -> list[BenefitDefinition]:
        stmt = select(BenefitDefinition).order_by(BenefitDefinition.id).limit(limit)
        if kind is not None:
            stmt = stmt.where(BenefitDefinition.kind == kind)
        if status is not None:
            stmt = stmt.where(BenefitDefinition.status == status)
        if claimable is not None:
            stmt = stmt.where(BenefitDefinition.claimable.is_(claimable))
        if after_id is not None:
            stmt = stmt.where(BenefitDefinition.id > after_id)
        return list(self.session.scalars(stmt))

    # -- members and entitlements ------------------------------------------------------------------

    def member(self, member_id: int, *, for_update: bool = False) -> Member | None:
        stmt = select(Member).where(Member.id == member_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def entitlement(self, member_benefit_id: int, *, for_update: bool = False) -> MemberBenefit | None:
        stmt = select(MemberBenefit).where(MemberBenefit.id == member_benefit_id)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def refresh(self, mb: MemberBenefit) -> MemberBenefit:
        """The entitlement as the database has it now (after a conditional update)."""
        stmt = (
            select(MemberBenefit).where(MemberBenefit.id == mb.id).execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).one()

    def entitlements(
        self,
        *,
        member_id: int,
        status: str | None = None,
        now: datetime | None = None,
        after_id: int | None = None,
        limit: int = 50,
    ) -> list[MemberBenefit]:
        """A member's entitlements, newest first. ``status`` is the status shown: ``active`` leaves
        out those whose validity has passed, ``expired`` includes them."""
        stmt = select(MemberBenefit).where(MemberBenefit.member_id == member_id)
        if status == "active" and now is not None:
            stmt = stmt.where(
                MemberBenefit.status == "active",
                or_(MemberBenefit.valid_to.is_(None), MemberBenefit.valid_to > now),
            )
        elif status == "expired" and now is not None:
            stmt = stmt.where(
                or_(
                    MemberBenefit.status == "expired",
                    (MemberBenefit.status == "active") & (MemberBenefit.valid_to <= now),
                )
            )
        elif status is not None:
            stmt = stmt.where(MemberBenefit.status == status)
        if after_id is not None:
            stmt = stmt.where(MemberBenefit.id < after_id)
        return list(self.session.scalars(stmt.order_by(MemberBenefit.id.desc()).limit(limit)))

    def by_grant_key(self, brand_id: int, key: str) -> MemberBenefit | None:
        stmt = select(MemberBenefit).where(MemberBenefit.brand_id == brand_id, MemberBenefit.grant_key == key)
        return self.session.scalars(stmt).one_or_none()

    def claims(self, member_id: int, definition_id: int) -> int:
        """How often the member claimed this benefit (grants keyed ``claim:{member_id}:…``)."""
        stmt = select(func.count()).where(
            BenefitEvent.member_id == member_id,
            BenefitEvent.definition_id == definition_id,
            BenefitEvent.kind == "issued",
            BenefitEvent.key.like(f"claim:{member_id}:%"),
        )
        return int(self.session.scalar(stmt.select_from(BenefitEvent)) or 0)

    def take_use(self, mb_id: int, *, from_reservation: bool) -> bool:
        """Use one unit, only if the entitlement is active and has one to give (for an appointment:
        one it holds). The ``WHERE`` is the guard: concurrent takers of the last use meet at the row
        and exactly one of them changes it."""
        conditions: list[Any] = [MemberBenefit.id == mb_id, MemberBenefit.status == "active"]
        values: dict[str, Any] = {"used": MemberBenefit.used + 1}
        if from_reservation:
            conditions.append(MemberBenefit.reserved >= 1)
            values["reserved"] = MemberBenefit.reserved - 1
        else:
            conditions.append(
                or_(MemberBenefit.remaining.is_(None), MemberBenefit.remaining - MemberBenefit.reserved >= 1)
            )
        values["remaining"] = MemberBenefit.remaining - 1  # NULL stays NULL (unlimited)
        stmt = update(MemberBenefit).where(*conditions).values(**values)
        result = self.session.execute(stmt.execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def hold_use(self, mb_id: int) -> bool:
        """Reserve one unit for an appointment, only if one is free."""
        stmt = (
            update(MemberBenefit)
            .where(
                MemberBenefit.id == mb_id,
                MemberBenefit.status == "active",
                or_(MemberBenefit.remaining.is_(None), MemberBenefit.remaining - MemberBenefit.reserved >= 1),
            )
            .values(reserved=MemberBenefit.reserved + 1)
        )
        result = self.session.execute(stmt.execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def release_use(self, mb_id: int) -> None:
        stmt = (
            update(MemberBenefit)
            .where(MemberBenefit.id == mb_id, MemberBenefit.reserved >= 1)
            .values(reserved=MemberBenefit.reserved - 1)
        )
        self.session.execute(stmt.execution_options(synchronize_session=False))

    def due_to_expire_ids(self, now: datetime, *, after_id: int, limit: int) -> list[int]:
        stmt = (
            select(MemberBenefit.id)
            .where(
                MemberBenefit.status == "active",
                MemberBenefit.valid_to <= now,
                MemberBenefit.id > after_id,
            )
            .order_by(MemberBenefit.id)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def count_due_to_expire(self, now: datetime, *, after_id: int) -> int:
        stmt = select(func.count()).where(
            MemberBenefit.status == "active", MemberBenefit.valid_to <= now, MemberBenefit.id > after_id
        )
        return int(self.session.scalar(stmt.select_from(MemberBenefit)) or 0)

    # -- events ------------------------------------------------------------------------------------

    def issued_event(self, brand_id: int, key: str) -> BenefitEvent | None:
        stmt = select(BenefitEvent).where(BenefitEvent.brand_id == brand_id, BenefitEvent.key == key)
        return self.session.scalars(stmt).one_or_none()

    def events(
        self,
        *,
        member_benefit_id: int | None = None,
        definition_id: int | None = None,
        limit: int = 500,
        newest_first: bool = False,
    ) -> list[BenefitEvent]:
        order = BenefitEvent.id.desc() if newest_first else BenefitEvent.id
        stmt = select(BenefitEvent).order_by(order).limit(limit)
        if member_benefit_id is not None:
            stmt = stmt.where(BenefitEvent.member_benefit_id == member_benefit_id)
        if definition_id is not None:
            stmt = stmt.where(BenefitEvent.definition_id == definition_id)
        return list(self.session.scalars(stmt))

    def event_counts(self, definition_id: int) -> dict[str, int]:
        """How many events of each kind a definition has (configured, issued, verified …)."""
        stmt = (
            select(BenefitEvent.kind, func.count())
            .where(BenefitEvent.definition_id == definition_id)
            .group_by(BenefitEvent.kind)
        )
        return {str(kind): int(n) for kind, n in self.session.execute(stmt)}

    def event_times(
        self, definition_id: int, kinds: tuple[str, ...], since: datetime, until: datetime
    ) -> list[tuple[str, datetime]]:
        """``(kind, occurred_at)`` of a definition's events of these kinds in ``[since, until)``."""
        stmt = (
            select(BenefitEvent.kind, BenefitEvent.occurred_at)
            .where(
                BenefitEvent.definition_id == definition_id,
                BenefitEvent.kind.in_(kinds),
                BenefitEvent.occurred_at >= since,
                BenefitEvent.occurred_at < until,
            )
            .order_by(BenefitEvent.id)
        )
        return [(str(kind), at) for kind, at in self.session.execute(stmt)]

    # -- usages ------------------------------------------------------------------------------------

    def uses_between(self, member_id: int, definition_id: int, start: datetime, end: datetime) -> int:
        stmt = select(func.count()).where(
            BenefitUsage.member_id == member_id,
            BenefitUsage.definition_id == definition_id,
            BenefitUsage.used_at >= start,
            BenefitUsage.used_at < end,
        )
        return int(self.session.scalar(stmt.select_from(BenefitUsage)) or 0)

    def usages(
        self,
        *,
        member_id: int | None = None,
        definition_id: int | None = None,
        member_benefit_id: int | None = None,
        after_id: int | None = None,
        limit: int = 50,
    ) -> list[BenefitUsage]:
        stmt = select(BenefitUsage).order_by(BenefitUsage.id.desc()).limit(limit)
        if member_id is not None:
            stmt = stmt.where(BenefitUsage.member_id == member_id)
        if definition_id is not None:
            stmt = stmt.where(BenefitUsage.definition_id == definition_id)
        if member_benefit_id is not None:
            stmt = stmt.where(BenefitUsage.member_benefit_id == member_benefit_id)
        if after_id is not None:
            stmt = stmt.where(BenefitUsage.id < after_id)
        return list(self.session.scalars(stmt))

    def usages_between(self, start: datetime, end: datetime) -> list[BenefitUsage]:
        stmt = (
            select(BenefitUsage)
            .where(BenefitUsage.used_at >= start, BenefitUsage.used_at < end)
            .order_by(BenefitUsage.id)
        )
        return list(self.session.scalars(stmt))

    # -- scan codes --------------------------------------------------------------------------------

    def scan_code(self, code_id: int, *, fresh: bool = False) -> BenefitScanCode | None:
        stmt = select(BenefitScanCode).where(BenefitScanCode.id == code_id)
        if fresh:
            stmt = stmt.execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def mark_code_used(self, code_id: int, nonce: str, now: datetime) -> bool:
        """Spend a code: only an unused, unexpired one changes (one winner under concurrency)."""
        stmt = (
            update(BenefitScanCode)
            .where(
                BenefitScanCode.id == code_id,
                BenefitScanCode.nonce == nonce,
                BenefitScanCode.used_at.is_(None),
                BenefitScanCode.expires_at > now,
            )
            .values(used_at=now)
        )
        result = self.session.execute(stmt.execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- appointments ------------------------------------------------------------------------------

    def appointment(self, appointment_id: int) -> BenefitAppointment | None:
        stmt = (
            select(BenefitAppointment)
            .where(BenefitAppointment.id == appointment_id)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(stmt).one_or_none()

    def appointment_by_key(self, brand_id: int, key: str) -> BenefitAppointment | None:
        stmt = select(BenefitAppointment).where(
            BenefitAppointment.brand_id == brand_id, BenefitAppointment.booking_key == key
        )
        return self.session.scalars(stmt).one_or_none()

    def close_appointment(self, appointment_id: int, status: str, now: datetime) -> bool:
        """Move a booked appointment to ``status``; only one caller can."""
        stmt = (
            update(BenefitAppointment)
            .where(BenefitAppointment.id == appointment_id, BenefitAppointment.status == "booked")
            .values(status=status, closed_at=now)
        )
        result = self.session.execute(stmt.execution_options(synchronize_session=False))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def booked_in_slot(self, definition_id: int, starts_at: datetime, *, excluding: int | None) -> int:
        stmt = select(func.count()).where(
            BenefitAppointment.definition_id == definition_id,
            BenefitAppointment.starts_at == starts_at,
            BenefitAppointment.status == "booked",
        )
        if excluding is not None:
            stmt = stmt.where(BenefitAppointment.id != excluding)
        return int(self.session.scalar(stmt.select_from(BenefitAppointment)) or 0)

    def booked_between(
        self, member_id: int, definition_id: int, start: datetime, end: datetime, *, excluding: int | None
    ) -> int:
        stmt = select(func.count()).where(
            BenefitAppointment.member_id == member_id,
            BenefitAppointment.definition_id == definition_id,
            BenefitAppointment.status == "booked",
            BenefitAppointment.starts_at >= start,
            BenefitAppointment.starts_at < end,
        )
        if excluding is not None:
            stmt = stmt.where(BenefitAppointment.id != excluding)
        return int(self.session.scalar(stmt.select_from(BenefitAppointment)) or 0)

    def open_appointments(self, member_benefit_id: int) -> list[BenefitAppointment]:
        stmt = select(BenefitAppointment).where(
            BenefitAppointment.member_benefit_id == member_benefit_id, BenefitAppointment.status == "booked"
        )
        return list(self.session.scalars(stmt))

    def appointments(
        self,
        *,
        member_id: int | None = None,
        definition_id: int | None = None,
        status: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 200,
    ) -> list[BenefitAppointment]:
        stmt = select(BenefitAppointment).order_by(BenefitAppointment.starts_at, BenefitAppointment.id)
        if member_id is not None:
            stmt = stmt.where(BenefitAppointment.member_id == member_id)
        if definition_id is not None:
            stmt = stmt.where(BenefitAppointment.definition_id == definition_id)
        if status is not None:
            stmt = stmt.where(BenefitAppointment.status == status)
        if start is not None:
            stmt = stmt.where(BenefitAppointment.starts_at >= start)
        if end is not None:
            stmt = stmt.where(BenefitAppointment.starts_at < end)
        return list(self.session.scalars(stmt.limit(limit)))
