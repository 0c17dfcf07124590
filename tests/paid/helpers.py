"""Plans shared by the paid-membership tests: category ``family`` with silver (rank 1, 120.00 a
year, monthly benefit, ×1.5) and gold (rank 2, 240.00 a year, ×2); category ``drivers`` with a
30-day pass granting a weekly benefit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def benefit(amount: int) -> dict[str, Any]:
    return {"kind": "test_benefit", "amount": amount}


def level_body(category_id: int, code: str = "silver", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category_id": category_id,
        "code": code,
        "name": code.title(),
        "rank": 1,
        "price": "120.00",
        "validity": {"unit": "month", "count": 12},
        "cooling_off_days": 7,
        "benefits": {
            "one_time": [benefit(100)],
            "periodic": {"period": "month", "benefits": [benefit(10)]},
            "points_multiplier": "1.5",
        },
    }
    body.update(overrides)
    return body


@dataclass
class Plans:
    family: int
    drivers: int
    silver: int
    gold: int
    week_pass: int


def make_plans(client: Any, headers: dict[str, str]) -> Plans:
    def post(path: str, body: dict[str, Any]) -> int:
        r = client.post(path, json=body, headers=headers)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    family = post(
        "/api/v1/paid/categories", {"code": "family", "name": "家庭会员", "customer_group": "family"}
    )
    drivers = post(
        "/api/v1/paid/categories", {"code": "drivers", "name": "车主会员", "customer_group": "drivers"}
    )
    silver = post("/api/v1/paid/levels", level_body(family))
    gold = post(
        "/api/v1/paid/levels",
        level_body(
            family,
            "gold",
            rank=2,
            price="240.00",
            benefits={"one_time": [benefit(300)], "points_multiplier": "2"},
        ),
    )
    week_pass = post(
        "/api/v1/paid/levels",
        level_body(
            drivers,
            "week-pass",
            price="30.00",
            validity={"unit": "day", "count": 30},
            cooling_off_days=0,
            benefits={"periodic": {"period": "week", "benefits": [benefit(5), benefit(1)]}},
        ),
    )
    return Plans(family=family, drivers=drivers, silver=silver, gold=gold, week_pass=week_pass)


def buy(client: Any, headers: dict[str, str], member_id: int, level_id: int, ref: str, **extra: Any) -> Any:
    body = {"level_id": level_id, "payment_reference": ref, **extra}
    return client.post(f"/api/v1/members/{member_id}/paid/buy", json=body, headers=headers)
