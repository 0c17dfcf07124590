"""Concurrent verifications on SQLite and PostgreSQL: the last use goes to exactly one of them, and
one code is used once however many desks submit it.

Every racer runs in its own ``unit_of_work`` on its own thread; the threads are released together.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from huiyuan.benefits import verification
from huiyuan.benefits.models import BenefitUsage
from tests.benefits.helpers import BenefitBrand
from tests.points.helpers import race


def _kinds(results: list[Any]) -> Counter[str]:
    return Counter(type(r).__name__ for r in results)


def test_twenty_desks_race_for_the_last_use(bb: BenefitBrand) -> None:
    d = bb.define(limits={"uses_per_entitlement": 3})
    m = bb.members[0]
    mb = bb.grant(d.code, m, "race").entitlement
    assert mb is not None
    for _ in range(2):  # two of the three uses go first: one is left
        code = bb.run(verification.issue_scan_code, member_id=m, member_benefit_id=mb.id)
        bb.run(verification.verify_scan, token=code.token)
    codes = [bb.run(verification.issue_scan_code, member_id=m, member_benefit_id=mb.id) for _ in range(20)]
    results = race(20, lambda i: bb.run(verification.verify_scan, token=codes[i].token))
    assert _kinds(results) == {"UseResult": 1, "BenefitUnavailable": 19}, results
    after = bb.entitlement(mb.id)
    assert (after.remaining, after.used, after.status) == (0, 3, "used_up")
    assert bb.count(BenefitUsage, BenefitUsage.member_benefit_id == mb.id) == 3


def test_one_code_submitted_by_twenty_desks_is_used_once(bb: BenefitBrand) -> None:
    d = bb.define(limits={"uses_per_entitlement": 5})
    m = bb.members[1]
    mb = bb.grant(d.code, m, "once").entitlement
    assert mb is not None
    code = bb.run(verification.issue_scan_code, member_id=m, member_benefit_id=mb.id)
    results = race(20, lambda i: bb.run(verification.verify_scan, token=code.token))
    assert _kinds(results) == {"UseResult": 1, "ScanCodeUsed": 19}, results
    assert bb.entitlement(mb.id).remaining == 4
