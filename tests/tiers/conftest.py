"""Tier tests run on a frozen clock (restored after each test) with a counted test benefit kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from tests.tiers.helpers import register_test_gift, utc

START = utc(2026, 3, 1, 2, 0)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    previous = get_clock()
    frozen = FrozenClock(START)
    set_clock(frozen)
    register_test_gift()
    try:
        yield frozen
    finally:
        set_clock(previous)
