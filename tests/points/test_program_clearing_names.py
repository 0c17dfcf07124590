"""Programme clearing names its brands wherever a person reads a party: every ``brand:<id>`` of the
settlement (funders, redeemers, pairs, positions, the operator) has the brand's name and code, read
through the programme's cross-brand view — for the platform and for a participant alike, and for a
brand that has left — and every CSV/XLSX table keeps the id column with a name column beside it."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import scope_of
from huiyuan.kit.scope import SYSTEM, Scope
from huiyuan.points import clearing, program_admin, program_clearing
from huiyuan.points.program_models import PointProgramBrand
from huiyuan.points.program_schemas import ParticipationUpdate
from tests.points.program_helpers import Alliance

BRAND_PARTY = re.compile(r"^brand:\d+$")

# ``clock`` and ``al`` (the alliance with a member at B and at C) come from ``tests/points/conftest.py``.
pytestmark = pytest.mark.usefixtures("fresh_programme_memory")


def _scenario(al: Alliance, clock: FrozenClock) -> tuple[datetime, datetime]:
    """B's and C's members earn and spend across the two brands; the host spends too."""
    start = clock.now() - timedelta(days=1)
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-e", amount=100)
    clock.advance(seconds=1)
    al.earn(al.c, al.members["c"], "c-e", amount=50)
    al.spend(al.c, al.members["c"], 120, "c-s")
    al.spend(al.b, al.members["b"], 10, "b-s")
    return start, clock.now() + timedelta(seconds=1)


def _parties(s: clearing.Settlement) -> set[str]:
    return {
        s.operator,
        *(x for f in s.flows for x in (f.funder, f.redeemer)),
        *(u.party for u in s.unilateral),
        *(x for p in s.pairs for x in (p.party_a, p.party_b)),
        *(p.party for p in s.positions),
        *(f.funder for f in s.funders),
    }


def _blocks(text: str) -> dict[str, list[list[str]]]:
    blocks: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))):
        if len(row) == 1:
            current = blocks.setdefault(row[0], [])
        elif row:
            current.append(row)
    return blocks


def assert_named_beside(rows: list[list[object]], s: clearing.Settlement) -> int:
    """Every party id in the table's rows has the party's name in the next column; how many ids."""
    seen = 0
    for row in rows:
        for i, cell in enumerate(row):
            if isinstance(cell, str) and BRAND_PARTY.match(cell):
                assert row[i + 1] == s.name_of(cell) != cell, row
                seen += 1
    return seen


def test_every_brand_party_has_its_name_for_the_platform_and_a_participant(
    al: Alliance, clock: FrozenClock
) -> None:
    start, end = _scenario(al, clock)
    # B leaves afterwards: its past funding and redeeming still carry its name.
    with al.db.unit_of_work() as s:
        program_admin.update_participation(
            s, actor=SYSTEM, code=al.code, brand_code=al.codes[al.b], data=ParticipationUpdate(status="left")
        )
    for viewer in (None, al.c, al.b, al.host):
        s = al.settle(viewer, start, end)
        brands = {p for p in _parties(s) if p.startswith("brand:")}
        assert brands == {f"brand:{al.host}", f"brand:{al.b}", f"brand:{al.c}"}
        for party in brands:
            brand_id = int(party.split(":")[1])
            assert s.name_of(party).endswith(f"({al.codes[brand_id]})"), (viewer, party)
            assert s.name_of(party) != party


def test_exports_keep_the_id_and_add_the_name_in_every_table(al: Alliance, clock: FrozenClock) -> None:
    start, end = _scenario(al, clock)
    s = al.settle(al.c, start, end)
    assert s.pairs and s.funders

    blocks = _blocks(clearing.to_csv(s))
    summary = dict((r[0], r[1]) for r in blocks[clearing.SUMMARY_TITLE][1:])
    assert summary["运营方 / Operator"] == f"brand:{al.host}"
    assert summary["运营方名称 / Operator name"] == s.name_of(f"brand:{al.host}")
    for title in clearing.SECTION_TITLES:
        _header, *rows = blocks[title]
        assert assert_named_beside(rows, s) > 0, title
    pairs = blocks["多边轧差 / Pairs"]
    assert pairs[0][:4] == [
        "甲方 / Party A",
        "甲方名称 / Party A name",
        "乙方 / Party B",
        "乙方名称 / Party B name",
    ]
    (pair,) = s.pairs
    assert pairs[1][:4] == [pair.party_a, s.name_of(pair.party_a), pair.party_b, s.name_of(pair.party_b)]

    book = load_workbook(io.BytesIO(clearing.to_xlsx(s)))
    for name in book.sheetnames[1:]:
        _header, *rows = list(book[name].iter_rows(values_only=True))
        assert assert_named_beside([list(r) for r in rows], s) > 0, name
    assert next(book[book.sheetnames[3]].iter_rows(values_only=True)) == clearing.PAIR_HEADERS


def test_names_are_read_through_the_cross_brand_view_only(al: Alliance, clock: FrozenClock) -> None:
    """A participant's session sees its own participation only; the other brands' names come from
    the programme's read-only view, and the caller's scope is its own again afterwards."""
    start, end = _scenario(al, clock)
    actor = al.actor(al.c)
    with al.db.unit_of_work(actor.scope, write=False) as session:
        s = program_clearing.settle(session, actor=actor, code=al.code, start=start, end=end)
        assert s.name_of(f"brand:{al.b}").endswith(f"({al.codes[al.b]})")
        assert scope_of(session) == actor.scope
        assert [p.brand_id for p in session.scalars(select(PointProgramBrand))] == [al.c]


def test_the_hosts_own_brand_clearing_names_the_funding_brands(al: Alliance, clock: FrozenClock) -> None:
    """The host's brand clearing (``clearing.settle``) over the programme's point type lists the
    participants as funders by name; its session's scope is its own again afterwards."""
    start, end = _scenario(al, clock)
    with al.db.unit_of_work(Scope(brand_id=al.host), write=False) as session:
        s = clearing.settle(session, brand_id=al.host, start=start, end=end, point_types=["alliance"])
        assert scope_of(session) == Scope(brand_id=al.host)
    funders = {p for p in _parties(s) if p.startswith("brand:")}
    assert funders == {f"brand:{al.b}", f"brand:{al.c}"}
    for party in funders:
        brand_id = int(party.split(":")[1])
        assert s.name_of(party).endswith(f"({al.codes[brand_id]})")
    # An outsider of the programme is never named, even if a lot said it funded.
    assert f"brand:{al.d}" not in s.party_names
    blocks = _blocks(clearing.to_csv(s))
    assert sum(assert_named_beside(rows, s) for rows in blocks.values()) > 0
