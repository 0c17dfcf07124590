"""Benefit tests run on a frozen clock at ``helpers.T0`` (a Monday, 10:00 in Asia/Shanghai)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from tests.benefits.helpers import T0, BenefitBrand, make_benefit_brand
from tests.points.helpers import frozen_clock


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock(T0) as c:
        yield c


@pytest.fixture
def bb(db: Database, clock: FrozenClock) -> BenefitBrand:
    return make_benefit_brand(db)
