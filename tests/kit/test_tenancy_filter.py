"""The tenancy filter in kit.db, exercised directly on sessions (no HTTP)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import aliased

from huiyuan.kit.db import TenancyViolation
from huiyuan.kit.scope import Scope
from huiyuan.tenancy.models import Store
from tests.factories import make_brand


@pytest.fixture
def two_brands(db):  # type: ignore[no-untyped-def]
    return make_brand(db, "alpha", stores=2), make_brand(db, "beta", stores=3)


def test_selects_see_only_the_scope_brand(db, two_brands) -> None:
    a, b = two_brands
    with db.unit_of_work(Scope(brand_id=a), write=False) as s:
        assert {st.brand_id for st in s.scalars(select(Store))} == {a}
        assert s.scalar(select(func.count()).select_from(Store)) == 2
        other = aliased(Store)
        assert s.scalar(select(func.count()).select_from(other)) == 2
        beta_store = s.scalars(select(Store).where(Store.brand_id == b)).all()
        assert beta_store == []
    with db.unit_of_work(Scope(brand_id=None, platform=True), write=False) as s:
        assert s.scalar(select(func.count()).select_from(Store)) == 5


def test_bulk_update_and_delete_stay_in_scope(db, two_brands) -> None:
    a, b = two_brands
    with db.unit_of_work(Scope(brand_id=a)) as s:
        s.execute(update(Store).values(status="closed"))
    with db.unit_of_work(None, write=False) as s:
        statuses = dict(
            s.execute(
                select(Store.brand_id, func.count()).where(Store.status == "closed").group_by(Store.brand_id)
            ).all()
        )
    assert statuses == {a: 2}
    with db.unit_of_work(Scope(brand_id=a)) as s:
        s.execute(delete(Store).where(Store.code.like("%s1")))
    with db.unit_of_work(None, write=False) as s:
        assert s.scalar(select(func.count()).select_from(Store).where(Store.brand_id == b)) == 3


def test_flush_of_another_brands_row_is_refused_and_rolled_back(db, two_brands) -> None:
    a, b = two_brands
    with pytest.raises(TenancyViolation), db.unit_of_work(Scope(brand_id=a)) as s:
        s.add(Store(brand_id=b, code="sneaky", name="x"))
        s.flush()
    with db.unit_of_work(None, write=False) as s:
        assert s.scalars(select(Store).where(Store.code == "sneaky")).first() is None


def test_get_by_primary_key_is_filtered(db, two_brands) -> None:
    a, b = two_brands
    with db.unit_of_work(None, write=False) as s:
        beta_id = s.scalars(select(Store.id).where(Store.brand_id == b)).first()
    with db.unit_of_work(Scope(brand_id=a), write=False) as s:
        assert s.get(Store, beta_id) is None
