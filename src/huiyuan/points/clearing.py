"""Points clearing (积分清算): who owes whom for the points consumed in a period, at fair value.

Every grant (lot) names the party that pays for it (``funded_by``); every consumption happens at a
party that honours the points (gives the goods or the discount). Clearing settles the two: the
funder of each consumed point owes its redeemer the point's fair value at grant (``unit_value`` of
the lot). ``settle`` computes, for one brand and a half-open period ``[start, end)``:

* **flows** — the matrix funder → redeemer: points consumed and their value;
* **unilateral** clearing (单边清算: one operator clears with many merchants): every party other
  than the operator (the brand by default) against the operator: points it funded, points redeemed
  at it, and the net (positive: the operator pays the party; negative: the party pays the operator);
* **multilateral** clearing (多边清算: the parties clear among themselves): for every pair of
  parties the gross value both ways and the net, and each party's overall net position;
* per funder: **breakage** (points that expired in the period: the funder keeps the release of the
  liability), and the **outstanding liability** at ``end`` (points still in its lots), plus the
  points held by checkout reservations still open at ``end`` (out of the lots, not yet consumed).

Parties (strings, used as keys everywhere):

* funder of a lot: ``funded_by`` as written — ``"platform"``, ``"brand"``, ``"merchant:<code>"`` —
  except ``"store"``, which means the store the lot was earned at: ``"store:<lot.store_id>"``
  (a store-funded lot without a store falls back to ``"brand"``, which stands behind it);
* redeemer of a consumption: ``"store:<store_id>"`` of the ``spend`` / ``confirm`` entry (the store
  where the points were spent), or ``"brand"`` when the entry names no store (points mall, online
  redemption run by the brand itself).

What counts (the ledger's entries are the only truth; the cached lot state is never read):

* consumed = the lot draws of ``spend`` entries in the period, plus those of ``confirm`` entries in
  the period (a confirm draws nothing itself: its lots are the ones its reservation's ``reserve``
  entry drew, whenever that was), minus the give-backs of ``restore`` entries in the period that
  reverse a spend or a confirm. The give-back counts against the redeemer of the spend it reverses
  and in the period the restore happens, so a refund of points spent in an earlier (already
  settled) period is a negative adjustment of the current one and nothing is ever settled twice.
  A flow can therefore be negative. Operator adjustments, refund reversals of earned points and
  transfers are not consumption (a transfer keeps each lot's funder and fair value);
* breakage = the draws of ``expire`` entries in the period, less what a decay carry-over (``carry``
  entries) granted back to the same funder in new lots;
* outstanding at ``end`` = Σ of all lot moves of entries before ``end`` (the lots' remaining points
  as of ``end``, whatever state they are in now). A lot past its expiry that no sweep or operation
  has expired yet still counts: run the expiry sweep up to ``end`` before settling a closed period.
* held at ``end`` = draws of ``reserve`` entries before ``end`` whose reservation had no ``confirm``
  or ``release`` entry before ``end``.

Only point types that can be spent are cleared (growth value and other non-spendable types carry
no money), unless ``point_types`` names the types.

Rounding: values are exact ``Decimal`` (points × ``unit_value``, six places) until the end; each
flow cell (funder, redeemer) is rounded once, half up, to the fen, and every other money figure
(unilateral lines, pairs, positions) is a sum of those rounded cells, so they add up exactly and the
net positions sum to zero in fen. Breakage, outstanding and held values are rounded once per funder.

This module is the repository of clearing: every query it needs is here. Pure functions over a
session; nothing is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Executable, and_, func, select
from sqlalchemy.orm import Session, aliased

from huiyuan.kit import tables
from huiyuan.kit.errors import NotFound, ValidationFailed, field_error
from huiyuan.kit.types import to_money
from huiyuan.points.merchants import FUNDER_PREFIX as MERCHANT
from huiyuan.points.merchants import MerchantRepository
from huiyuan.points.models import PointEntry, PointEntryLot, PointLot, PointType
from huiyuan.tenancy.models import Brand, Store

PLATFORM = "platform"
BRAND = "brand"
OPERATOR = BRAND  # the default operator of unilateral clearing: the brand running the programme
ZERO = Decimal("0.00")

# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumption:
    """Points of lots of one fair value, funded by ``funder``, consumed at ``redeemer``."""

    funder: str
    redeemer: str
    unit_value: Decimal
    spent: int = 0
    restored: int = 0


@dataclass(frozen=True)
class FlowLine:
    """One cell of the funder → redeemer matrix: ``funder`` owes ``redeemer`` ``value``."""

    funder: str
    redeemer: str
    spent_points: int
    restored_points: int
    points: int  # spent − restored
    value: Decimal  # fen, rounded once for the cell


@dataclass(frozen=True)
class UnilateralLine:
    """A party against the operator: positive ``net`` is paid by the operator to the party."""

    party: str
    funded_points: int
    funded_value: Decimal
    redeemed_points: int
    redeemed_value: Decimal
    net: Decimal  # redeemed_value − funded_value


@dataclass(frozen=True)
class PairLine:
    """Two parties (``party_a`` sorts first): gross flows both ways; positive ``net``: a pays b."""

    party_a: str
    party_b: str
    a_to_b_points: int
    a_to_b_value: Decimal
    b_to_a_points: int
    b_to_a_value: Decimal
    net: Decimal  # a_to_b_value − b_to_a_value


@dataclass(frozen=True)
class PositionLine:
    """A party's overall position in multilateral clearing; positive ``net``: it is owed money."""

    party: str
    receivable: Decimal  # Σ what others owe it
    payable: Decimal  # Σ what it owes others
    net: Decimal  # receivable − payable


@dataclass(frozen=True)
class FunderLine:
    """What a funder's lots did besides being consumed: breakage in the period, liability at end."""

    funder: str
    expired_points: int
    expired_value: Decimal
    outstanding_points: int
    outstanding_value: Decimal
    held_points: int
    held_value: Decimal


@dataclass(frozen=True)
class Clearing:
    """The clearing figures derived from consumptions alone (see ``clear``)."""

    flows: list[FlowLine]
    unilateral: list[UnilateralLine]
    pairs: list[PairLine]
    positions: list[PositionLine]


@dataclass(frozen=True)
class Settlement:
    """The settlement of one brand's points for ``[start, end)``."""

    brand_id: int
    brand_name: str
    start: datetime
    end: datetime
    operator: str
    point_types: tuple[str, ...]
    flows: list[FlowLine]
    unilateral: list[UnilateralLine]
    pairs: list[PairLine]
    positions: list[PositionLine]
    funders: list[FunderLine]
    # Display names of the parties (key → name).
    party_names: dict[str, str] = field(default_factory=dict)

    @property
    def consumed_points(self) -> int:
        return sum(f.points for f in self.flows)

    @property
    def consumed_value(self) -> Decimal:
        return sum((f.value for f in self.flows), ZERO)

    def name_of(self, party: str) -> str:
        return self.party_names.get(party, party)


# -- parties --------------------------------------------------------------------------------------


def funder_party(funded_by: str, lot_store_id: int | None) -> str:
    """The party paying for a lot: ``funded_by``, with ``"store"`` resolved to the lot's store."""
    if funded_by == "store":
        return f"store:{lot_store_id}" if lot_store_id is not None else BRAND
    return funded_by


def redeemer_party(store_id: int | None) -> str:
    """The party honouring a consumption: the store of the spend/confirm entry, else the brand."""
    return f"store:{store_id}" if store_id is not None else BRAND


def party_order(party: str) -> tuple[int, int, str]:
    """Platform, brand, merchants, stores (by id), anything else."""
    if party == PLATFORM:
        return (0, 0, "")
    if party == BRAND:
        return (1, 0, "")
    if party.startswith("merchant:"):
        return (2, 0, party)
    if party.startswith("store:") and party[6:].isdigit():
        return (3, int(party[6:]), "")
    return (4, 0, party)


# -- the clearing arithmetic (pure) ---------------------------------------------------------------


def clear(consumptions: Iterable[Consumption], *, operator: str = OPERATOR) -> Clearing:
    """Flows, unilateral lines, pairs and positions from consumptions; no database.

    Each (funder, redeemer) cell is valued exactly and rounded once; everything else sums cells.
    """
    exact: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    spent: dict[tuple[str, str], int] = defaultdict(int)
    restored: dict[tuple[str, str], int] = defaultdict(int)
    for c in consumptions:
        cell = (c.funder, c.redeemer)
        exact[cell] += (c.spent - c.restored) * c.unit_value
        spent[cell] += c.spent
        restored[cell] += c.restored
    flows = [
        FlowLine(
            funder=f,
            redeemer=r,
            spent_points=spent[(f, r)],
            restored_points=restored[(f, r)],
            points=spent[(f, r)] - restored[(f, r)],
            value=to_money(exact[(f, r)]),
        )
        for f, r in sorted(exact, key=lambda cell: (party_order(cell[0]), party_order(cell[1])))
    ]

    parties = sorted({p for fl in flows for p in (fl.funder, fl.redeemer)}, key=party_order)
    funded_pts: dict[str, int] = defaultdict(int)
    funded_val: dict[str, Decimal] = defaultdict(lambda: ZERO)
    redeemed_pts: dict[str, int] = defaultdict(int)
    redeemed_val: dict[str, Decimal] = defaultdict(lambda: ZERO)
    receivable: dict[str, Decimal] = defaultdict(lambda: ZERO)
    payable: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_pair: dict[tuple[str, str], FlowLine] = {}
    for fl in flows:
        funded_pts[fl.funder] += fl.points
        funded_val[fl.funder] += fl.value
        redeemed_pts[fl.redeemer] += fl.points
        redeemed_val[fl.redeemer] += fl.value
        if fl.funder != fl.redeemer:
            payable[fl.funder] += fl.value
            receivable[fl.redeemer] += fl.value
            by_pair[(fl.funder, fl.redeemer)] = fl

    unilateral = [
        UnilateralLine(
            party=p,
            funded_points=funded_pts[p],
            funded_value=funded_val[p],
            redeemed_points=redeemed_pts[p],
            redeemed_value=redeemed_val[p],
            net=redeemed_val[p] - funded_val[p],
        )
        for p in parties
        if p != operator
    ]

    pairs: list[PairLine] = []
    for i, a in enumerate(parties):
        for b in parties[i + 1 :]:
            ab, ba = by_pair.get((a, b)), by_pair.get((b, a))
            if ab is None and ba is None:
                continue
            ab_value = ab.value if ab else ZERO
            ba_value = ba.value if ba else ZERO
            pairs.append(
                PairLine(
                    party_a=a,
                    party_b=b,
                    a_to_b_points=ab.points if ab else 0,
                    a_to_b_value=ab_value,
                    b_to_a_points=ba.points if ba else 0,
                    b_to_a_value=ba_value,
                    net=ab_value - ba_value,
                )
            )

    positions = [
        PositionLine(party=p, receivable=receivable[p], payable=payable[p], net=receivable[p] - payable[p])
        for p in parties
    ]
    return Clearing(flows=flows, unilateral=unilateral, pairs=pairs, positions=positions)


# -- queries --------------------------------------------------------------------------------------

_LOT = (PointLot.funded_by, PointLot.store_id, PointLot.unit_value)


def _point_types(session: Session, brand_id: int, codes: Sequence[str] | None) -> list[PointType]:
    stmt = select(PointType).where(PointType.brand_id == brand_id, PointType.kind != "wallet")
    if codes is None:
        stmt = stmt.where(PointType.spendable.is_(True))
    else:
        stmt = stmt.where(PointType.code.in_(list(codes)))
    found = list(session.scalars(stmt.order_by(PointType.code)))
    if codes is not None and len(found) != len(set(codes)):
        missing = sorted(set(codes) - {pt.code for pt in found})
        raise ValidationFailed(
            f"Unknown point types: {', '.join(missing)}.",
            errors=[field_error("point_types", "no such point type", "unknown-point-type")],
        )
    return found


_Rows = list[tuple[Any, ...]]


def _rows(session: Session, stmt: Executable) -> _Rows:
    return [tuple(row) for row in session.execute(stmt).all()]


def _spend_draws(
    session: Session, brand_id: int, type_ids: list[int], start: datetime, end: datetime
) -> _Rows:
    """(funded_by, lot store, unit_value, entry store, Σ moves) of spends in the period."""
    e = PointEntry
    stmt = (
        select(*_LOT, e.store_id, func.sum(PointEntryLot.amount))
        .select_from(e)
        .join(PointEntryLot, PointEntryLot.entry_id == e.id)
        .join(PointLot, PointLot.id == PointEntryLot.lot_id)
        .where(
            e.brand_id == brand_id,
            e.kind == "spend",
            e.point_type_id.in_(type_ids),
            e.occurred_at >= start,
            e.occurred_at < end,
        )
        .group_by(*_LOT, e.store_id)
    )
    return _rows(session, stmt)


def _confirm_draws(
    session: Session, brand_id: int, type_ids: list[int], start: datetime, end: datetime
) -> _Rows:
    """Confirms in the period, with the lots their reservation's ``reserve`` entry drew."""
    confirm = aliased(PointEntry)
    reserve = aliased(PointEntry)
    stmt = (
        select(*_LOT, confirm.store_id, func.sum(PointEntryLot.amount))
        .select_from(confirm)
        .join(
            reserve,
            and_(reserve.reservation_id == confirm.reservation_id, reserve.kind == "reserve"),
        )
        .join(PointEntryLot, PointEntryLot.entry_id == reserve.id)
        .join(PointLot, PointLot.id == PointEntryLot.lot_id)
        .where(
            confirm.brand_id == brand_id,
            confirm.kind == "confirm",
            confirm.point_type_id.in_(type_ids),
            confirm.occurred_at >= start,
            confirm.occurred_at < end,
        )
        .group_by(*_LOT, confirm.store_id)
    )
    return _rows(session, stmt)


def _restore_gives(
    session: Session, brand_id: int, type_ids: list[int], start: datetime, end: datetime
) -> _Rows:
    """Restores in the period of spends or confirms (any period), by the reversed entry's store."""
    restore = aliased(PointEntry)
    spent = aliased(PointEntry)
    stmt = (
        select(*_LOT, spent.store_id, func.sum(PointEntryLot.amount))
        .select_from(restore)
        .join(spent, spent.id == restore.reverses_entry_id)
        .join(PointEntryLot, PointEntryLot.entry_id == restore.id)
        .join(PointLot, PointLot.id == PointEntryLot.lot_id)
        .where(
            restore.brand_id == brand_id,
            restore.kind == "restore",
            spent.kind.in_(("spend", "confirm")),
            restore.point_type_id.in_(type_ids),
            restore.occurred_at >= start,
            restore.occurred_at < end,
        )
        .group_by(*_LOT, spent.store_id)
    )
    return _rows(session, stmt)


def _moves_by_lot(
    session: Session,
    brand_id: int,
    type_ids: list[int],
    *,
    kinds: Sequence[str] | None,
    start: datetime | None,
    end: datetime,
) -> _Rows:
    """(funded_by, lot store, unit_value, Σ moves) of entries of ``kinds`` in [start, end)."""
    e = PointEntry
    stmt = (
        select(*_LOT, func.sum(PointEntryLot.amount))
        .select_from(e)
        .join(PointEntryLot, PointEntryLot.entry_id == e.id)
        .join(PointLot, PointLot.id == PointEntryLot.lot_id)
        .where(e.brand_id == brand_id, e.point_type_id.in_(type_ids), e.occurred_at < end)
        .group_by(*_LOT)
    )
    if kinds is not None:
        stmt = stmt.where(e.kind.in_(list(kinds)))
    if start is not None:
        stmt = stmt.where(e.occurred_at >= start)
    return _rows(session, stmt)


def _held_at(session: Session, brand_id: int, type_ids: list[int], end: datetime) -> _Rows:
    """(funded_by, lot store, unit_value, Σ moves) of reservations still held at ``end``."""
    reserve = aliased(PointEntry)
    settled = aliased(PointEntry)
    closed = (
        select(settled.id)
        .where(
            settled.reservation_id == reserve.reservation_id,
            settled.kind.in_(("confirm", "release")),
            settled.occurred_at < end,
        )
        .exists()
    )
    stmt = (
        select(*_LOT, func.sum(PointEntryLot.amount))
        .select_from(reserve)
        .join(PointEntryLot, PointEntryLot.entry_id == reserve.id)
        .join(PointLot, PointLot.id == PointEntryLot.lot_id)
        .where(
            reserve.brand_id == brand_id,
            reserve.kind == "reserve",
            reserve.point_type_id.in_(type_ids),
            reserve.occurred_at < end,
            ~closed,
        )
        .group_by(*_LOT)
    )
    return _rows(session, stmt)


def _party_names(session: Session, brand: Brand, parties: Iterable[str]) -> dict[str, str]:
    wanted = set(parties)
    names = {PLATFORM: "平台 / Platform", BRAND: brand.name}
    if any(p.startswith("brand:") for p in wanted):
        # Points the brand hosts for a shared programme, funded by the brands taking part.
        from huiyuan.points.program_clearing import host_funder_names  # the programmes build on this module

        names.update(host_funder_names(session, brand.id))
    for store_id, code, name in session.execute(
        select(Store.id, Store.code, Store.name).where(Store.brand_id == brand.id)
    ).all():
        names[f"store:{store_id}"] = f"{name} ({code})"
    # Merchants from the brand's registry; a code it does not know keeps showing its key.
    merchant_codes = {p.removeprefix(MERCHANT) for p in wanted if p.startswith(MERCHANT)}
    for party, (name, code) in MerchantRepository(session).names(brand.id, merchant_codes).items():
        names[party] = f"{name} ({code})"
    return names


# -- settle ---------------------------------------------------------------------------------------


def _require_period(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed(
            "The period bounds must be timezone-aware.",
            errors=[field_error("start" if start.tzinfo is None else "end", "timezone required")],
        )
    if end <= start:
        raise ValidationFailed(
            "The period must end after it starts.", errors=[field_error("end", "must be after start")]
        )


def _by_funder(rows: _Rows, sign: int) -> dict[str, tuple[int, Decimal]]:
    """Σ points and exact value per funder of (funded_by, lot store, unit_value, Σ moves) rows."""
    out: dict[str, tuple[int, Decimal]] = {}
    for funded_by, lot_store, unit_value, moved in rows:
        points = sign * int(moved or 0)
        party = funder_party(funded_by, lot_store)
        was_points, was_value = out.get(party, (0, Decimal(0)))
        out[party] = (was_points + points, was_value + points * Decimal(unit_value))
    return out


def settle(
    session: Session,
    *,
    brand_id: int,
    start: datetime,
    end: datetime,
    operator: str = OPERATOR,
    point_types: Sequence[str] | None = None,
) -> Settlement:
    """The settlement of ``brand_id``'s points consumed in ``[start, end)`` (see the module doc).

    ``operator`` is the party the others clear against in the unilateral view; ``point_types``
    (codes) narrows the types cleared, by default every spendable type of the brand.
    """
    _require_period(start, end)
    brand = session.get(Brand, brand_id)
    if brand is None:
        raise NotFound(f"Brand {brand_id} was not found.")
    types = _point_types(session, brand_id, point_types)
    type_ids = [pt.id for pt in types] or [-1]

    consumptions: list[Consumption] = []
    for rows, restored in (
        (_spend_draws(session, brand_id, type_ids, start, end), False),
        (_confirm_draws(session, brand_id, type_ids, start, end), False),
        (_restore_gives(session, brand_id, type_ids, start, end), True),
    ):
        for funded_by, lot_store, unit_value, entry_store, moved in rows:
            points = int(moved or 0)
            if points == 0:
                continue
            consumptions.append(
                Consumption(
                    funder=funder_party(funded_by, lot_store),
                    redeemer=redeemer_party(entry_store),
                    unit_value=Decimal(unit_value),
                    spent=0 if restored else -points,
                    restored=points if restored else 0,
                )
            )
    cleared = clear(consumptions, operator=operator)

    expired = _by_funder(
        _moves_by_lot(session, brand_id, type_ids, kinds=("expire",), start=start, end=end), -1
    )
    carried = _by_funder(
        _moves_by_lot(session, brand_id, type_ids, kinds=("carry",), start=start, end=end), 1
    )
    outstanding = _by_funder(_moves_by_lot(session, brand_id, type_ids, kinds=None, start=None, end=end), 1)
    held = _by_funder(_held_at(session, brand_id, type_ids, end), -1)
    funders: list[FunderLine] = []
    nothing = (0, Decimal(0))
    for party in sorted({*expired, *carried, *outstanding, *held}, key=party_order):
        exp_points, exp_value = expired.get(party, nothing)
        car_points, car_value = carried.get(party, nothing)
        out_points, out_value = outstanding.get(party, nothing)
        held_points, held_value = held.get(party, nothing)
        line = FunderLine(
            funder=party,
            expired_points=exp_points - car_points,
            expired_value=to_money(exp_value - car_value),
            outstanding_points=out_points,
            outstanding_value=to_money(out_value),
            held_points=held_points,
            held_value=to_money(held_value),
        )
        if line.expired_points or line.outstanding_points or line.held_points:
            funders.append(line)

    return Settlement(
        brand_id=brand_id,
        brand_name=brand.name,
        start=start,
        end=end,
        operator=operator,
        point_types=tuple(pt.code for pt in types),
        flows=cleared.flows,
        unilateral=cleared.unilateral,
        pairs=cleared.pairs,
        positions=cleared.positions,
        funders=funders,
        party_names=_party_names(
            session,
            brand,
            [
                *(f.funder for f in funders),
                *(f.funder for f in cleared.flows),
                *(p.party for p in cleared.positions),
            ],
        ),
    )


# -- export ---------------------------------------------------------------------------------------

SUMMARY_TITLE = "清算概要 / Summary"
SECTION_TITLES = (
    "清算明细 / Flows",
    "单边清算 / Unilateral",
    "多边轧差 / Pairs",
    "净头寸 / Net positions",
    "出资方过期与负债 / Funders",
)
FLOW_HEADERS = (
    "出资方 / Funder",
    "出资方名称 / Funder name",
    "兑换方 / Redeemer",
    "兑换方名称 / Redeemer name",
    "消耗积分 / Points spent",
    "退回积分 / Points restored",
    "净消耗积分 / Net points",
    "结算金额(元) / Amount (CNY)",
)
UNILATERAL_HEADERS = (
    "参与方 / Party",
    "名称 / Name",
    "出资积分 / Points funded",
    "出资金额(元) / Funded (CNY)",
    "兑换积分 / Points redeemed",
    "兑换金额(元) / Redeemed (CNY)",
    "净额(元) / Net (CNY)",
    "方向 / Direction",
)
PAIR_HEADERS = (
    "甲方 / Party A",
    "甲方名称 / Party A name",
    "乙方 / Party B",
    "乙方名称 / Party B name",
    "甲付乙积分 / Points A→B",
    "甲付乙金额(元) / A→B (CNY)",
    "乙付甲积分 / Points B→A",
    "乙付甲金额(元) / B→A (CNY)",
    "净额(元, 正数甲付乙) / Net (CNY, positive: A pays B)",
)
POSITION_HEADERS = (
    "参与方 / Party",
    "名称 / Name",
    "应收(元) / Receivable (CNY)",
    "应付(元) / Payable (CNY)",
    "净头寸(元) / Net position (CNY)",
)
FUNDER_HEADERS = (
    "出资方 / Funder",
    "名称 / Name",
    "过期积分 / Points expired",
    "过期金额(元) / Expired (CNY)",
    "期末未用积分 / Points outstanding",
    "期末负债(元) / Outstanding (CNY)",
    "期末占用积分 / Points held",
    "期末占用金额(元) / Held (CNY)",
)


def _direction(net: Decimal) -> str:
    if net > 0:
        return "运营方付 / operator pays"
    if net < 0:
        return "付运营方 / pays operator"
    return "无 / none"


def sections(s: Settlement) -> list[tuple[str, tuple[str, ...], list[list[Any]]]]:
    """(title, headers, rows) of each table of the export; values are int, Decimal or str."""
    summary: list[list[Any]] = [
        ["品牌 / Brand", s.brand_name],
        ["期间开始 / Period start", s.start.isoformat()],
        ["期间结束(不含) / Period end (exclusive)", s.end.isoformat()],
        ["运营方 / Operator", s.operator],
        ["运营方名称 / Operator name", s.name_of(s.operator)],
        ["积分类型 / Point types", ", ".join(s.point_types)],
        ["消耗积分 / Points consumed", s.consumed_points],
        ["结算金额(元) / Amount (CNY)", s.consumed_value],
    ]
    flows = [
        [
            f.funder,
            s.name_of(f.funder),
            f.redeemer,
            s.name_of(f.redeemer),
            f.spent_points,
            f.restored_points,
            f.points,
            f.value,
        ]
        for f in s.flows
    ]
    unilateral = [
        [
            u.party,
            s.name_of(u.party),
            u.funded_points,
            u.funded_value,
            u.redeemed_points,
            u.redeemed_value,
            u.net,
            _direction(u.net),
        ]
        for u in s.unilateral
    ]
    pairs = [
        [
            p.party_a,
            s.name_of(p.party_a),
            p.party_b,
            s.name_of(p.party_b),
            p.a_to_b_points,
            p.a_to_b_value,
            p.b_to_a_points,
            p.b_to_a_value,
            p.net,
        ]
        for p in s.pairs
    ]
    positions = [[p.party, s.name_of(p.party), p.receivable, p.payable, p.net] for p in s.positions]
    funders = [
        [
            f.funder,
            s.name_of(f.funder),
            f.expired_points,
            f.expired_value,
            f.outstanding_points,
            f.outstanding_value,
            f.held_points,
            f.held_value,
        ]
        for f in s.funders
    ]
    return [
        (SUMMARY_TITLE, ("项目 / Item", "值 / Value"), summary),
        (SECTION_TITLES[0], FLOW_HEADERS, flows),
        (SECTION_TITLES[1], UNILATERAL_HEADERS, unilateral),
        (SECTION_TITLES[2], PAIR_HEADERS, pairs),
        (SECTION_TITLES[3], POSITION_HEADERS, positions),
        (SECTION_TITLES[4], FUNDER_HEADERS, funders),
    ]


def to_csv(settlement: Settlement) -> str:
    """The settlement as CSV: one block per table, bilingual headers (``kit.tables``)."""
    return tables.to_csv(sections(settlement))


def to_xlsx(settlement: Settlement) -> bytes:
    """The settlement as an Excel workbook: one sheet per table, the summary first."""
    return tables.to_xlsx(sections(settlement))
