"""Clearing of a shared point programme between its brands (多边清算).

The programme's points are a point type of the host brand, so its consumptions are the host
ledger's spend, confirm and restore entries; what this module adds is *which brand* each side
was: the funder of a lot is the brand that granted it (``funded_by = "brand:<id>"``; the host's own
grants, ``"brand"`` or a host store, are the host's), and the redeemer of a consumption is the brand
whose programme operation spent it (the host when the host spent through its own points API).
The arithmetic, rounding and export are ``points.clearing``'s (``clear``, ``Settlement``,
``sections``), with parties ``brand:<id>`` and the host as operator of the unilateral view.

The reads span every brand of the programme, so they run in the cross-brand view of the
programme bridge (``programs.all_brands_view``), after the caller was checked: the platform, or a brand
that takes or took part. Nothing is written. The brands' names (``party_names``: ``name (code)`` of
every brand that takes or took part) are read in the same view, so a participant's console and
export name the other brands without its own session seeing their rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.points import clearing
from huiyuan.points.program_repository import DrawRow, ProgramRepository
from huiyuan.points.programs import all_brands_view, program_by_code, standing


def brand_party(brand_id: int) -> str:
    return f"brand:{brand_id}"


def host_funder_names(session: Session, host_brand_id: int) -> dict[str, str]:
    """``brand:<id>`` → ``name (code)`` of the brands in the host's programmes: the funders that the
    host's own clearing (``clearing.settle``) lists. Read through the cross-brand view, for the host
    only; a brand in no programme gets an empty map."""
    with all_brands_view(session):
        brands = ProgramRepository(session).brands_in_programs_of_host(host_brand_id)
    return {brand_party(b.id): f"{b.name} ({b.code})" for b in brands}


def _funder(funded_by: str, host_party: str) -> str:
    # The host's own grants ("brand", or a store of the host) are the host's; "brand:<id>" names the
    # funding brand; platform and merchants stay parties of their own.
    if funded_by in (clearing.BRAND, "store"):
        return host_party
    return funded_by


def _consumptions(rows: list[DrawRow], host_party: str, *, restored: bool) -> list[clearing.Consumption]:
    out = []
    for funded_by, _lot_store, unit_value, brand_id, moved in rows:
        if moved == 0:
            continue
        out.append(
            clearing.Consumption(
                funder=_funder(funded_by, host_party),
                redeemer=brand_party(brand_id) if brand_id is not None else host_party,
                unit_value=Decimal(unit_value),
                spent=0 if restored else -moved,
                restored=moved if restored else 0,
            )
        )
    return out


def _funder_totals(rows: list[tuple[Any, ...]], host_party: str, sign: int) -> dict[str, tuple[int, Decimal]]:
    out: dict[str, tuple[int, Decimal]] = {}
    for funded_by, _lot_store, unit_value, moved in rows:
        pts = sign * int(moved or 0)
        party = _funder(funded_by, host_party)
        was_points, was_value = out.get(party, (0, Decimal(0)))
        out[party] = (was_points + pts, was_value + pts * Decimal(unit_value))
    return out


def settle(
    session: Session, *, actor: Principal, code: str, start: datetime | None, end: datetime | None
) -> clearing.Settlement:
    """Clearing of the programme's points consumed in ``[start, end)`` between its brands.

    For the platform and for every brand that takes or took part; the host is the operator of the
    unilateral view."""
    if actor.scope.is_platform_wide:
        program = program_by_code(session, code)
    else:
        program = standing(session, actor, code, verb=None).program
    if start is None or end is None:
        missing = [name for name, value in (("from", start), ("to", end)) if value is None]
        raise ValidationFailed(
            "A period is required.", errors=[field_error(name, "required", "required") for name in missing]
        )
    clearing._require_period(start, end)
    host_party = brand_party(program.host_brand_id)
    repo = ProgramRepository(session)
    host_id, nothing = program.host_brand_id, (0, Decimal(0))
    with all_brands_view(session):
        pt = repo.point_type_by_id(program.point_type_id)
        assert pt is not None
        type_ids = [pt.id]
        consumptions = [
            *_consumptions(repo.spend_draws(host_id, pt.id, start, end), host_party, restored=False),
            *_consumptions(repo.confirm_draws(host_id, pt.id, start, end), host_party, restored=False),
            *_consumptions(repo.restore_gives(host_id, pt.id, start, end), host_party, restored=True),
        ]
        moves = clearing._moves_by_lot
        expired = _funder_totals(
            moves(session, host_id, type_ids, kinds=("expire",), start=start, end=end), host_party, -1
        )
        carried = _funder_totals(
            moves(session, host_id, type_ids, kinds=("carry",), start=start, end=end), host_party, 1
        )
        outstanding = _funder_totals(
            moves(session, host_id, type_ids, kinds=None, start=None, end=end), host_party, 1
        )
        held = _funder_totals(clearing._held_at(session, host_id, type_ids, end), host_party, -1)
        participants = [b for _p, b in repo.participations(program.id)]
    cleared = clearing.clear(consumptions, operator=host_party)
    funders = []
    for party in sorted({*expired, *carried, *outstanding, *held}, key=clearing.party_order):
        exp_points, exp_value = expired.get(party, nothing)
        car_points, car_value = carried.get(party, nothing)
        out_points, out_value = outstanding.get(party, nothing)
        held_points, held_value = held.get(party, nothing)
        line = clearing.FunderLine(
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
    names = {clearing.PLATFORM: "平台 / Platform"}
    names.update({brand_party(b.id): f"{b.name} ({b.code})" for b in participants})
    return clearing.Settlement(
        brand_id=program.host_brand_id,
        brand_name=f"{program.name} ({program.code})",
        start=start,
        end=end,
        operator=host_party,
        point_types=(pt.code,),
        flows=cleared.flows,
        unilateral=cleared.unilateral,
        pairs=cleared.pairs,
        positions=cleared.positions,
        funders=funders,
        party_names=names,
    )
