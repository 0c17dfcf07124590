"""The retail calendar of the demo: how busy a (local) day is for a kind of brand, and whether it is
a promotion day. Spring Festival (a pre-festival peak, then a dip), 618, Double 11, Double 12, 3·8,
520, National Day, Christmas and weekends. Pure functions of the date; no randomness."""

from __future__ import annotations

from datetime import date

from huiyuan.demo.reference import BRANDS, SPRING_FESTIVAL

_WEEKEND = {profile.kind: profile.weekend for profile in BRANDS}


def _spring_festival(year: int) -> date:
    month, day = SPRING_FESTIVAL.get(year, (2, 1))
    return date(year, month, day)


def _festival_offset(day: date) -> int:
    """Days from the nearest Spring Festival (negative before it)."""
    offsets = [(day - _spring_festival(y)).days for y in (day.year - 1, day.year, day.year + 1)]
    return min(offsets, key=abs)


def is_promotion(day: date, kind: str) -> bool:
    """A day with platform-wide deep discounts (618, Double 11, Double 12; 3·8 for beauty)."""
    m, d = day.month, day.day
    if (m == 6 and d <= 18) or (m == 10 and d >= 20) or (m == 11 and d <= 11) or (m == 12 and d == 12):
        return True
    return kind == "beauty" and m == 3 and 6 <= d <= 8


def online_boost(day: date) -> float:
    """How much more online channels weigh on a shopping-festival day."""
    m, d = day.month, day.day
    if (m == 6 and d == 18) or (m == 11 and d == 11):
        return 4.0
    if is_promotion(day, ""):
        return 1.8
    return 1.0


def day_factor(day: date, kind: str) -> float:
    """Relative order volume of a local day for a brand of ``kind`` (apparel, coffee, beauty)."""
    f = 1.0
    m, d, wd = day.month, day.day, day.weekday()
    coffee = kind == "coffee"

    sf = _festival_offset(day)
    if -21 <= sf <= -3:
        f *= {"apparel": 1.6, "beauty": 1.4}.get(kind, 1.1)  # new clothes and gifts before the festival
    elif -2 <= sf <= 6:
        f *= 0.45 if coffee else 0.35  # people travel home, shops close
    elif 7 <= sf <= 14:
        f *= 0.8

    if m == 6 and d == 18:
        f *= 1.2 if coffee else 3.0
    elif m == 6 and d < 18:
        f *= 1.05 if coffee else 1.3
    elif m == 11 and d == 11:
        f *= 1.2 if coffee else (6.0 if kind == "beauty" else 4.5)
    elif (m == 10 and d >= 20) or (m == 11 and d < 11):
        f *= 1.0 if coffee else 1.3
    elif m == 12 and d == 12:
        f *= 1.8
    elif m == 3 and d == 8:
        f *= {"beauty": 2.0, "apparel": 1.4}.get(kind, 1.0)
    elif m == 5 and d == 20:
        f *= {"beauty": 1.8, "coffee": 1.3}.get(kind, 1.1)
    elif m == 10 and d <= 7:
        f *= 0.8 if coffee else 1.3  # National Day holiday: malls busy, offices empty
    elif m == 12 and d in (24, 25):
        f *= 1.4 if coffee else 1.2

    if kind == "apparel":
        f *= {7: 0.85, 8: 0.85, 10: 1.1, 11: 1.15, 12: 1.2}.get(m, 1.0)  # coats sell in winter
    elif coffee:
        f *= {7: 1.1, 8: 1.1, 1: 0.9, 2: 0.9}.get(m, 1.0)

    if wd >= 5:
        f *= _WEEKEND.get(kind, 1.2)
    elif wd == 4 and not coffee:
        f *= 1.1
    return f
