"""Console pages of shared point programmes in both languages: the platform's list of programmes
(host, point type, every brand's rate and status) and the clearing between brands for a period
(table, chart data, the export links), checked against the services; a brand user's read-only list
of its own programmes with its linked members' counts; and tenancy: a brand never sees a programme it
is not in, nor the other brands' participations of one it is in."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM
from huiyuan.points import program_admin, program_cache, program_clearing, programs
from huiyuan.points.program_schemas import ParticipationIn
from huiyuan.settings import get_settings
from tests.console.conftest import make_user, signed_in
from tests.points.program_helpers import Alliance, make_alliance

ZONE = ZoneInfo(get_settings().default_timezone)


@pytest.fixture(autouse=True)
def _fresh_programme_memory() -> Any:
    program_cache.forget_all()
    yield
    program_cache.forget_all()


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _row(html: str, marker: str) -> str:
    """The text of the programme's row, its table of brands included (up to the next programme)."""
    after = html.split(marker, 1)[1]
    return _text(after.split('<tr data-program="', 1)[0].split("</section>", 1)[0])


def _english(client: Any) -> None:
    client.get("/console/lang?to=en&next=/console", follow_redirects=False)


@pytest.fixture
def two(db: Database) -> tuple[Alliance, Alliance]:
    """Programme ``al`` (host H, participants B and C) with B's member earning 100 and C's member
    spending 30 of them; programme ``other`` of other brands, which C also joined but B did not."""
    al = make_alliance(db)
    other = make_alliance(db)
    with db.unit_of_work() as s:
        program_admin.add_brand(
            s,
            actor=SYSTEM,
            code=other.code,
            data=ParticipationIn(brand=al.codes[al.c], earn_rate=Decimal("1.5")),
        )
    al.members["b"] = al.enroll(al.b, "小明@B")
    al.members["c"] = al.enroll(al.c, "小明@C")
    al.members["b2"] = al.enroll(al.b, "小红@B", phone="13900139000")
    for key, member in (("b", al.b), ("c", al.c), ("b2", al.b)):
        al.link(member, al.members[key])
    al.earn(al.b, al.members["b"], "b-e1", amount=100)
    al.spend(al.c, al.members["c"], 30, "c-s1")
    return al, other


def test_platform_lists_every_programme_with_its_brands(client: Any, db: Database, two: Any) -> None:
    al, other = two
    make_user(db, "root", "platform_admin", None)
    signed_in(client, "root")

    page = client.get("/console/points/programs")

    assert page.status_code == 200 and "联盟积分计划" in page.text
    assert 'href="/console/points/programs" class="active"' in page.text  # the points sub-navigation
    with db.unit_of_work(SYSTEM.scope, write=False) as s:
        expected = [program_admin.program_out(s, p) for p in program_admin.list_programs(s, actor=SYSTEM)]
    for out in expected:
        row = _row(page.text, f'<tr data-program="{out.code}">')
        assert out.host_brand in row and out.point_type in row
        for b in out.brands:
            assert b.brand in row
        roles = re.findall(r"(主办方|参与方)", row)
        assert len(roles) == len(out.brands)
    al_row = _row(page.text, f'<tr data-program="{al.code}">')
    # B earns 2 points per yuan, C 1; every participation is active.
    assert f"{al.codes[al.b]} 参与方 2 参与中" in al_row and f"{al.codes[al.c]} 参与方 1 参与中" in al_row
    other_row = _row(page.text, f'<tr data-program="{other.code}">')
    assert f"{al.codes[al.c]} 参与方 1.5 参与中" in other_row
    assert "已关联会员" not in page.text  # the platform sees no brand's member counts

    _english(client)
    english = client.get("/console/points/programs")
    assert "Shared point programmes" in english.text and "Participant" in english.text


def test_a_brand_sees_only_its_own_programmes_and_participation(client: Any, db: Database, two: Any) -> None:
    al, other = two
    make_user(db, "b-boss", "brand_admin", al.b)
    make_user(db, "c-boss", "brand_admin", al.c)

    signed_in(client, "b-boss")
    page = client.get("/console/points/programs")
    assert page.status_code == 200
    assert al.code in page.text and other.code not in page.text  # B is not in the other programme
    row = _row(page.text, f'<tr data-program="{al.code}">')
    assert al.codes[al.b] in row and al.codes[al.c] not in row  # nor sees C's participation
    with al.db.unit_of_work(al.actor(al.b).scope, write=False) as s:
        held = programs.linked_holdings(s, actor=al.actor(al.b), code=al.code)
    assert (held.linked_members, held.holders, held.available_points) == (2, 1, 70)
    assert (
        "已关联会员" in page.text and f"{held.linked_members} {held.holders} {held.available_points}" in row
    )
    assert client.get(f"/console/points/programs/{other.code}/clearing").status_code == 404
    assert client.get(f"/console/points/programs/{other.code}/clearing.json").status_code == 404

    client.cookies.clear()
    signed_in(client, "c-boss")
    page = client.get("/console/points/programs")
    assert al.code in page.text and other.code in page.text
    row = _row(page.text, f'<tr data-program="{al.code}">')
    assert al.codes[al.b] not in row
    assert "1 1 70" in row  # C's one linked member holds the same shared account


def test_clearing_page_matches_the_service_with_chart_and_exports(
    client: Any, db: Database, two: Any
) -> None:
    al, _other = two
    make_user(db, "root", "platform_admin", None)
    signed_in(client, "root")
    today = utcnow().astimezone(ZONE).date()
    first, last = today - timedelta(days=1), today
    query = f"from={first.isoformat()}&to={last.isoformat()}"

    page = client.get(f"/console/points/programs/{al.code}/clearing?{query}")

    assert page.status_code == 200, page.text
    start = datetime.combine(first, time(), tzinfo=ZONE)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=ZONE)
    with db.unit_of_work(SYSTEM.scope, write=False) as s:
        settled = program_clearing.settle(s, actor=SYSTEM, code=al.code, start=start, end=end)
    assert {p.party: p.net for p in settled.positions} == {
        f"brand:{al.b}": Decimal("-0.30"),
        f"brand:{al.c}": Decimal("0.30"),
    }
    for p in settled.positions:
        row = _text(page.text.split(f'<tr data-party="{p.party}">', 1)[1].split("</tr>", 1)[0])
        assert settled.name_of(p.party) in row and ("-¥0.30" if p.net < 0 else "¥0.30") in row
    assert "发放方 → 消耗方" in page.text

    chart = client.get(f"/console/points/programs/{al.code}/clearing.json?{query}").json()
    assert chart["months"] == [settled.name_of(p.party) for p in settled.positions]
    assert chart["series"][0]["data"] == [float(p.net) for p in settled.positions]

    links = re.findall(r'href="(/api/v1/points/programs/[^"]+)"', page.text)
    assert len(links) == 2 and links[0].endswith("format=csv") and links[1].endswith("format=xlsx")
    exported = client.get(links[0].replace("&amp;", "&"))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert [f"brand:{al.c}", settled.name_of(f"brand:{al.c}"), "0.30", "0.00", "0.30"] in rows

    # A period before anything happened: nothing consumed, an empty chart.
    empty = client.get(f"/console/points/programs/{al.code}/clearing?from=2020-01-01&to=2020-01-31")
    assert empty.status_code == 200 and "本期间内没有消耗联盟积分" in empty.text
    assert (
        client.get(f"/console/points/programs/{al.code}/clearing.json?from=2020-01-01&to=2020-01-31").json()[
            "series"
        ]
        == []
    )
    bad = client.get(f"/console/points/programs/{al.code}/clearing?from={last}&to={first}")
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    assert client.get("/console/points/programs/no-such/clearing").status_code == 404


def test_a_brand_reads_its_programmes_clearing(client: Any, db: Database, two: Any) -> None:
    al, _other = two
    make_user(db, "c-boss", "brand_admin", al.c)
    signed_in(client, "c-boss")
    today = utcnow().astimezone(ZONE).date()
    page = client.get(f"/console/points/programs/{al.code}/clearing?from={today}&to={today}")
    assert page.status_code == 200 and f'<tr data-party="brand:{al.c}">' in page.text


def test_clearing_names_every_brand_beside_its_party_id(client: Any, db: Database, two: Any) -> None:
    """A brand user reads the other brands of its programme by name (read through the programme's
    cross-brand view) in the tables, the chart and the exports, each beside the party id."""
    al, _other = two
    make_user(db, "c-boss", "brand_admin", al.c)
    signed_in(client, "c-boss")
    today = utcnow().astimezone(ZONE).date()
    query = f"from={today}&to={today}"
    page = client.get(f"/console/points/programs/{al.code}/clearing?{query}")
    assert page.status_code == 200, page.text
    names = {b: f"{code.upper()} ({code})" for b, code in al.codes.items()}  # ``make_brand``'s names
    for brand in (al.b, al.c):
        party = f"brand:{brand}"
        row = page.text.split(f'<tr data-party="{party}">', 1)[1].split("</tr>", 1)[0]
        assert f'<span class="party-name">{names[brand]}</span>' in row
        assert f'<span class="mono muted party-id">{party}</span>' in row
    flow = page.text.split(f'<tr data-funder="brand:{al.b}" data-redeemer="brand:{al.c}">', 1)[1]
    cells = _text(flow.split("</tr>", 1)[0])
    order = [names[al.b], f"brand:{al.b} ", names[al.c], f"brand:{al.c} "]
    assert [cells.index(x) for x in order] == sorted(cells.index(x) for x in order)

    chart = client.get(f"/console/points/programs/{al.code}/clearing.json?{query}").json()
    assert sorted(chart["months"]) == sorted([names[al.b], names[al.c]])

    start = datetime.combine(today, time(), tzinfo=ZONE)
    params = {"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat(), "format": "csv"}
    exported = client.get(f"/api/v1/points/programs/{al.code}/clearing", params=params)
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert ["运营方名称 / Operator name", names[al.host]] in rows
    (pair,) = [r for r in rows if len(r) == 9 and r[0].startswith("brand:")]
    assert {(pair[0], pair[1]), (pair[2], pair[3])} == {
        (f"brand:{al.b}", names[al.b]),
        (f"brand:{al.c}", names[al.c]),
    }
    for row in (r for r in rows if len(r) > 2):  # the summary names the operator on a row of its own
        for i, cell in enumerate(row):
            if re.fullmatch(r"brand:\d+", cell):
                assert row[i + 1] == names[int(cell[6:])], row
