"""Every query of shared point programmes: programmes, participations, links, programme operations,
host members found by phone, a brand's own ledger lines, and the draws programme clearing prices.

Tenancy is the session's (``kit.db``): participations, links and operations are rows of the brand
they concern, so a brand's session sees its own only. Queries on the host brand's ledger run while
``points.programs`` has opened the host's scope, and the clearing queries while it has opened the
cross-brand view; nothing here widens a scope itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from huiyuan.members.models import Member
from huiyuan.orders.models import Order
from huiyuan.points.models import PointAccount, PointEntry, PointEntryLot, PointLot, PointType
from huiyuan.points.program_models import (
    PointProgram,
    PointProgramBrand,
    PointProgramLink,
    PointProgramOperation,
)
from huiyuan.tenancy.models import Brand, Store

# (funded_by, lot store, unit_value, redeeming brand or None, Σ lot moves)
DrawRow = tuple[str, int | None, Any, int | None, int]


class ProgramRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- programmes and participations -------------------------------------------------------------

    def program_by_code(self, code: str) -> PointProgram | None:
        return self.session.scalars(select(PointProgram).where(PointProgram.code == code)).one_or_none()

    def program_of_type(self, point_type_id: int) -> PointProgram | None:
        stmt = select(PointProgram).where(PointProgram.point_type_id == point_type_id)
        return self.session.scalars(stmt).one_or_none()

    def programs(self) -> list[PointProgram]:
        return list(self.session.scalars(select(PointProgram).order_by(PointProgram.id)))

    def programs_with_participation(self) -> list[PointProgram]:
        """Programmes the session's brand takes part in (or took part in)."""
        stmt = (
            select(PointProgram)
            .join(PointProgramBrand, PointProgramBrand.program_id == PointProgram.id)
            .order_by(PointProgram.id)
        )
        return list(self.session.scalars(stmt))

    def participation(self, program_id: int, brand_id: int) -> PointProgramBrand | None:
        stmt = select(PointProgramBrand).where(
            PointProgramBrand.program_id == program_id, PointProgramBrand.brand_id == brand_id
        )
        return self.session.scalars(stmt).one_or_none()

    def participations(self, program_id: int) -> list[tuple[PointProgramBrand, Brand]]:
        stmt = (
            select(PointProgramBrand, Brand)
            .join(Brand, Brand.id == PointProgramBrand.brand_id)
            .where(PointProgramBrand.program_id == program_id)
            .order_by(PointProgramBrand.id)
        )
        return [(p, b) for p, b in self.session.execute(stmt).all()]

    def brands_in_programs_of_host(self, host_brand_id: int) -> list[Brand]:
        """Every brand that takes or took part in a programme the host runs (the host included)."""
        stmt = (
            select(Brand)
            .join(PointProgramBrand, PointProgramBrand.brand_id == Brand.id)
            .join(PointProgram, PointProgram.id == PointProgramBrand.program_id)
            .where(PointProgram.host_brand_id == host_brand_id)
            .distinct()
        )
        return list(self.session.scalars(stmt))

    def active_participations_of_brand(self, brand_id: int) -> list[tuple[PointProgramBrand, PointProgram]]:
        """The brand's active participations in active programmes (automatic earning)."""
        stmt = (
            select(PointProgramBrand, PointProgram)
            .join(PointProgram, PointProgram.id == PointProgramBrand.program_id)
            .where(
                PointProgramBrand.brand_id == brand_id,
                PointProgramBrand.status == "active",
                PointProgram.status == "active",
            )
            .order_by(PointProgram.id)
        )
        return [(p, prog) for p, prog in self.session.execute(stmt).all()]

    def brand_by_code(self, code: str) -> Brand | None:
        return self.session.scalars(select(Brand).where(Brand.code == code)).one_or_none()

    def point_type(self, brand_id: int, code: str) -> PointType | None:
        stmt = select(PointType).where(PointType.brand_id == brand_id, PointType.code == code)
        return self.session.scalars(stmt).one_or_none()

    def point_type_by_id(self, point_type_id: int) -> PointType | None:
        return self.session.scalars(select(PointType).where(PointType.id == point_type_id)).one_or_none()

    def brand_names(self, brand_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Brand id → (code, name)."""
        stmt = select(Brand.id, Brand.code, Brand.name).where(Brand.id.in_(list(brand_ids)))
        return {i: (code, name) for i, code, name in self.session.execute(stmt).all()}

    # -- members and links -------------------------------------------------------------------------

    def member(self, brand_id: int, member_id: int) -> Member | None:
        # A select, never ``session.get``: an identity-map hit would skip the tenancy filter.
        stmt = select(Member).where(Member.id == member_id, Member.brand_id == brand_id)
        return self.session.scalars(stmt).one_or_none()

    def members_by_phone(self, brand_id: int, phone_bidx: str) -> list[Member]:
        stmt = (
            select(Member)
            .where(Member.brand_id == brand_id, Member.phone_bidx == phone_bidx, Member.status != "closed")
            .order_by(Member.id)
        )
        return list(self.session.scalars(stmt))

    def store_by_code(self, brand_id: int, code: str) -> Store | None:
        stmt = select(Store).where(Store.brand_id == brand_id, Store.code == code)
        return self.session.scalars(stmt).one_or_none()

    def link_of_member(self, program_id: int, member_id: int) -> PointProgramLink | None:
        stmt = select(PointProgramLink).where(
            PointProgramLink.program_id == program_id, PointProgramLink.member_id == member_id
        )
        return self.session.scalars(stmt).one_or_none()

    def link_of_host_member(
        self, program_id: int, brand_id: int, host_member_id: int
    ) -> PointProgramLink | None:
        stmt = select(PointProgramLink).where(
            PointProgramLink.program_id == program_id,
            PointProgramLink.brand_id == brand_id,
            PointProgramLink.host_member_id == host_member_id,
        )
        return self.session.scalars(stmt).one_or_none()

    def linked_host_members(self, program_id: int, brand_id: int) -> list[int]:
        """The host members the brand's linked members hold their programme account with."""
        stmt = (
            select(PointProgramLink.host_member_id)
            .where(PointProgramLink.program_id == program_id, PointProgramLink.brand_id == brand_id)
            .order_by(PointProgramLink.host_member_id)
        )
        return list(self.session.scalars(stmt))

    def holdings(self, point_type_id: int, host_member_ids: Sequence[int]) -> tuple[int, int]:
        """(accounts holding available points, Σ available) of these host members (host scope)."""
        if not host_member_ids:
            return 0, 0
        stmt = select(func.count(), func.coalesce(func.sum(PointAccount.available), 0)).where(
            PointAccount.point_type_id == point_type_id,
            PointAccount.member_id.in_(list(host_member_ids)),
            PointAccount.available > 0,
        )
        holders, points = self.session.execute(stmt).one()
        return int(holders), int(points)

    # -- operations --------------------------------------------------------------------------------

    def operation_by_key(self, program_id: int, brand_id: int, key: str) -> PointProgramOperation | None:
        stmt = select(PointProgramOperation).where(
            PointProgramOperation.program_id == program_id,
            PointProgramOperation.brand_id == brand_id,
            PointProgramOperation.key == key,
        )
        return self.session.scalars(stmt).one_or_none()

    def operations_with_key(self, brand_id: int, key: str, kind: str) -> list[PointProgramOperation]:
        """The brand's operations under ``key`` in every programme (an order's automatic earns)."""
        stmt = (
            select(PointProgramOperation)
            .where(
                PointProgramOperation.brand_id == brand_id,
                PointProgramOperation.key == key,
                PointProgramOperation.kind == kind,
            )
            .order_by(PointProgramOperation.id)
        )
        return list(self.session.scalars(stmt))

    def program(self, program_id: int) -> PointProgram | None:
        return self.session.scalars(select(PointProgram).where(PointProgram.id == program_id)).one_or_none()

    def order(self, brand_id: int, order_id: int) -> Order | None:
        return self.session.scalars(
            select(Order).where(Order.id == order_id, Order.brand_id == brand_id)
        ).one_or_none()

    def lot_of_earn(self, ledger_operation_id: int) -> PointLot | None:
        """The lot an earn operation granted (host scope)."""
        stmt = (
            select(PointLot)
            .join(PointEntryLot, PointEntryLot.lot_id == PointLot.id)
            .join(PointEntry, PointEntry.id == PointEntryLot.entry_id)
            .where(PointEntry.operation_id == ledger_operation_id, PointEntry.kind == "earn")
        )
        return self.session.scalars(stmt).first()

    def operations_of_member(
        self, program_id: int, member_id: int, *, limit: int
    ) -> list[PointProgramOperation]:
        stmt = (
            select(PointProgramOperation)
            .where(
                PointProgramOperation.program_id == program_id, PointProgramOperation.member_id == member_id
            )
            .order_by(PointProgramOperation.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def entries_of_operations(self, operation_ids: Sequence[int]) -> list[PointEntry]:
        """Host ledger lines written by these ledger operations, newest first (host scope)."""
        if not operation_ids:
            return []
        stmt = (
            select(PointEntry)
            .where(PointEntry.operation_id.in_(list(operation_ids)))
            .order_by(PointEntry.id.desc())
        )
        return list(self.session.scalars(stmt))

    def spend_entry_of(self, ledger_operation_id: int) -> int | None:
        stmt = select(PointEntry.id).where(
            PointEntry.operation_id == ledger_operation_id, PointEntry.kind.in_(("spend", "confirm"))
        )
        return self.session.scalar(stmt)

    # -- clearing (cross-brand view) ---------------------------------------------------------------

    def _draws(self, stmt: Any) -> list[DrawRow]:
        return [
            (funded_by, lot_store, unit_value, brand_id, int(moved or 0))
            for funded_by, lot_store, unit_value, brand_id, moved in self.session.execute(stmt).all()
        ]

    def spend_draws(self, host_brand_id: int, type_id: int, start: datetime, end: datetime) -> list[DrawRow]:
        """Lot draws of spends in the period, with the brand whose programme operation spent."""
        e, op = PointEntry, PointProgramOperation
        stmt = (
            select(
                PointLot.funded_by,
                PointLot.store_id,
                PointLot.unit_value,
                op.brand_id,
                func.sum(PointEntryLot.amount),
            )
            .select_from(e)
            .join(PointEntryLot, PointEntryLot.entry_id == e.id)
            .join(PointLot, PointLot.id == PointEntryLot.lot_id)
            .outerjoin(op, op.ledger_operation_id == e.operation_id)
            .where(
                e.brand_id == host_brand_id,
                e.kind == "spend",
                e.point_type_id == type_id,
                e.occurred_at >= start,
                e.occurred_at < end,
            )
            .group_by(PointLot.funded_by, PointLot.store_id, PointLot.unit_value, op.brand_id)
        )
        return self._draws(stmt)

    def confirm_draws(
        self, host_brand_id: int, type_id: int, start: datetime, end: datetime
    ) -> list[DrawRow]:
        """Confirms in the period with the lots their reservation drew, and the brand whose programme
        confirm it was (none for the host's own checkouts through its points API)."""
        confirm, reserve, op = aliased(PointEntry), aliased(PointEntry), PointProgramOperation
        stmt = (
            select(
                PointLot.funded_by,
                PointLot.store_id,
                PointLot.unit_value,
                op.brand_id,
                func.sum(PointEntryLot.amount),
            )
            .select_from(confirm)
            .join(reserve, and_(reserve.reservation_id == confirm.reservation_id, reserve.kind == "reserve"))
            .join(PointEntryLot, PointEntryLot.entry_id == reserve.id)
            .join(PointLot, PointLot.id == PointEntryLot.lot_id)
            .outerjoin(op, op.ledger_operation_id == confirm.operation_id)
            .where(
                confirm.brand_id == host_brand_id,
                confirm.kind == "confirm",
                confirm.point_type_id == type_id,
                confirm.occurred_at >= start,
                confirm.occurred_at < end,
            )
            .group_by(PointLot.funded_by, PointLot.store_id, PointLot.unit_value, op.brand_id)
        )
        return self._draws(stmt)

    def restore_gives(
        self, host_brand_id: int, type_id: int, start: datetime, end: datetime
    ) -> list[DrawRow]:
        """Restores in the period of spends or confirms, with the brand of the reversed spend."""
        restore, spent, op = aliased(PointEntry), aliased(PointEntry), PointProgramOperation
        stmt = (
            select(
                PointLot.funded_by,
                PointLot.store_id,
                PointLot.unit_value,
                op.brand_id,
                func.sum(PointEntryLot.amount),
            )
            .select_from(restore)
            .join(spent, spent.id == restore.reverses_entry_id)
            .join(PointEntryLot, PointEntryLot.entry_id == restore.id)
            .join(PointLot, PointLot.id == PointEntryLot.lot_id)
            .outerjoin(op, op.ledger_operation_id == spent.operation_id)
            .where(
                restore.brand_id == host_brand_id,
                restore.kind == "restore",
                spent.kind.in_(("spend", "confirm")),
                restore.point_type_id == type_id,
                restore.occurred_at >= start,
                restore.occurred_at < end,
            )
            .group_by(PointLot.funded_by, PointLot.store_id, PointLot.unit_value, op.brand_id)
        )
        return self._draws(stmt)
