"""Fixtures of the points tests: a frozen clock, and for the programme tests the alliance of
``program_helpers`` with a member at B and at C, and an empty programme memory around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.points import program_cache
from tests.points.helpers import frozen_clock
from tests.points.program_helpers import Alliance, make_alliance


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture
def fresh_programme_memory() -> Iterator[None]:
    # Brand ids repeat across the tests' databases: no test starts with another's memory.
    program_cache.forget_all()
    yield
    program_cache.forget_all()


@pytest.fixture
def al(db: Database, clock: FrozenClock) -> Alliance:
    alliance = make_alliance(db)
    alliance.members["b"] = alliance.enroll(alliance.b, "小明@B")
    alliance.members["c"] = alliance.enroll(alliance.c, "小明@C")
    return alliance
