"""Settlement: verified uses × the unit cost copied at the time of use, per period, funding party and
serving party; JSON, CSV and XLSX."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import load_workbook

from huiyuan.benefits import catalogue, verification
from huiyuan.benefits.schemas import DefinitionUpdate
from huiyuan.kit.clock import FrozenClock
from tests.benefits.helpers import PARKING, BenefitBrand
from tests.factories import make_key

PERIOD = {"from": "2026-03-01T00:00:00+08:00", "to": "2026-04-01T00:00:00+08:00"}


def test_settlement_sums_uses_by_party(client: Any, bb: BenefitBrand, clock: FrozenClock) -> None:
    park = bb.define(PARKING, verification="manual", limits={"uses_per_entitlement": 10})
    lounge = bb.define(
        PARKING,
        code="LOUNGE",
        name="贵宾厅",
        verification="manual",
        unit_cost="50.00",
        funded_by="platform",
        served_by="partner:lounge-co",
    )
    m = bb.members[0]
    p = bb.grant(park.code, m, "p").entitlement
    lg = bb.grant(lounge.code, m, "l").entitlement
    assert p is not None and lg is not None

    def use(mb_id: int) -> None:
        bb.run(verification.verify_at_desk, member_benefit_id=mb_id, note="ok")

    use(p.id)
    use(p.id)
    clock.advance(days=1)
    use(p.id)
    use(lg.id)
    bb.run(catalogue.update_definition, definition_id=park.id, data=DefinitionUpdate(unit_cost="12.00"))
    use(p.id)  # priced at the new cost; earlier uses keep theirs
    h = {"Authorization": f"Bearer {make_key(bb.db, bb.brand_id)}"}
    r = client.get("/api/v1/benefits/settlement", params=PERIOD, headers=h)
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["uses"], s["amount"]) == (5, "92.00")
    assert [(b["funded_by"], b["served_by"], b["uses"], b["amount"]) for b in s["between"]] == [
        ("brand", "store:car-park", 4, "42.00"),
        ("platform", "partner:lounge-co", 1, "50.00"),
    ]
    assert s["by_funder"] == {"brand": "42.00", "platform": "50.00"}
    daily = client.get("/api/v1/benefits/settlement", params={**PERIOD, "period": "day"}, headers=h).json()
    assert [(ln["period"], ln["benefit"], ln["uses"], ln["amount"]) for ln in daily["lines"]] == [
        ("2026-03-02", "PARK-2H", 2, "20.00"),
        ("2026-03-03", "PARK-2H", 2, "22.00"),
        ("2026-03-03", "LOUNGE", 1, "50.00"),
    ]
    csv = client.get("/api/v1/benefits/settlement", params={**PERIOD, "format": "csv"}, headers=h)
    assert csv.headers["content-type"].startswith("text/csv") and "brand,store:car-park,4,42.00" in csv.text
    xlsx = client.get("/api/v1/benefits/settlement", params={**PERIOD, "format": "xlsx"}, headers=h)
    sheets = load_workbook(io.BytesIO(xlsx.content)).sheetnames
    assert len(sheets) == 2
    bad = client.get(
        "/api/v1/benefits/settlement", params={"from": PERIOD["to"], "to": PERIOD["from"]}, headers=h
    )
    assert bad.status_code == 422
