"""A refund of a lot that is past its expiry (and not yet expired by the job) expires it first, as
every verb settles the accounts it touches, and keeps what that settling wrote: the lot is
``expired`` afterwards, whether or not anything was left in it."""

from __future__ import annotations

import pytest

from huiyuan.kit.db import Database
from huiyuan.points import ledger
from tests.points.helpers import check_ledger, frozen_clock, make_points_brand


@pytest.mark.parametrize("spent", [10, 4])
def test_a_refund_expires_the_due_lot_it_reverses(db: Database, spent: int) -> None:
    with frozen_clock() as clock:
        pb = make_points_brand(db, members_count=1)
        (m,) = pb.members
        lot_id = pb.earn(m, 10, "e").extra["lot_id"]
        pb.spend(m, spent, "s")
        clock.advance(days=35)  # past the lot's expiry; no sweep ran
        r = pb.run(ledger.reverse_lot, lot_id=lot_id, amount=10, key="r", reason="refund")
        lot = pb.lot(lot_id)
        assert (lot.state, lot.remaining) == ("expired", 0)
        # What had expired unused is forgiven; what was spent becomes debt.
        assert (r.extra["forgiven"], r.extra["debt_added"]) == (10 - spent, spent)
        assert pb.account(m).expired_total == 10 - spent
        check_ledger(db, pb.brand_id)
