"""The arithmetic of salient features, by hand: additive (Laplace) smoothed lift, mid-rank
percentiles, local hours from epoch hours (the API tests check the same numbers end to end)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from huiyuan.profile import service
from huiyuan.profile.features import CATEGORY_ALPHA, lift, local_hours, percentile, smoothed_share


def test_lift_of_the_worked_example() -> None:
    # docs/profile.md: the person spends ¥600 of ¥800 on shoes, the brand ¥1,500 of ¥10,000; K = 3.
    assert CATEGORY_ALPHA == 10
    assert smoothed_share(600, 800, 3, 10) == pytest.approx(610 / 830)
    assert lift(600, 800, 1500, 10000, 3, 10) == pytest.approx(4.881752, abs=1e-6)
    assert lift(200, 800, 8000, 10000, 3, 10) == pytest.approx(0.316818, abs=1e-6)
    # A category never bought by the person under-indexes, whatever the brand does.
    assert lift(0, 800, 500, 10000, 3, 10) == pytest.approx((10 / 830) / (510 / 10030))
    # Smoothing pulls a thin history towards 1: all of ¥20 in a category that has a fifth of the
    # brand's spend is a weaker signal than all of ¥2,000 (unsmoothed, both would be 5×).
    thin, thick = lift(20, 20, 2000, 10000, 3, 10), lift(2000, 2000, 2000, 10000, 3, 10)
    assert thin == pytest.approx((30 / 50) / (2010 / 10030)) and thin < thick < 5
    # No data on either side: exactly the brand's share.
    assert lift(0, 0, 0, 0, 24, 1) == 1


def test_mid_rank_percentiles() -> None:
    assert percentile([266.67, 900, 2766.67], 266.67) == pytest.approx(100 / 6)
    assert percentile([1, 3, 3], 3) == pytest.approx(200 / 3)
    assert percentile([1, 2, 3, 4], 5) == 100
    assert percentile([1, 2, 3, 4], 0) == 0
    assert percentile([], 1) == 0


def test_local_hours_follow_the_zone_across_daylight_saving() -> None:
    def epoch_hour(at: datetime) -> int:
        return int(at.timestamp()) // 3600

    shanghai = local_hours(
        [(epoch_hour(datetime(2026, 3, 1, 12, 30, tzinfo=UTC)), 2)], ZoneInfo("Asia/Shanghai")
    )
    assert shanghai[20] == 2 and sum(shanghai) == 2
    berlin = ZoneInfo("Europe/Berlin")
    winter, summer = datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC)
    hours = local_hours([(epoch_hour(winter), 1), (epoch_hour(summer), 1)], berlin)
    assert hours[13] == 1 and hours[14] == 1


def test_search_type_detection() -> None:
    assert service.detect_type("138 0013 8000") == "phone"
    assert service.detect_type("+86 13800138000") == "phone"
    assert service.detect_type("wang@example.com") == "email"
    assert service.detect_type("1042") == "oneid"
    assert service.detect_type("AL00000001") == "member_number"
    assert service.detect_type("王小") == "any"
    assert service.detect_type("oWang-openid-1") == "any"
