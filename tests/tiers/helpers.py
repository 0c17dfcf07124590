"""Tier test helpers: a standard ladder, growth value through the points ledger, orders through the
API, and a test benefit kind whose grants are counted."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from huiyuan.benefits import registry
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Principal, system_for_brand
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.points import ledger
from huiyuan.points.models import PointType
from huiyuan.tiers import service
from huiyuan.tiers.models import MemberTier

# (member_id, key, params) of every grant of the "test_gift" kind that took effect.
GRANTS: list[tuple[int, str, dict[str, Any]]] = []
_granted_keys: set[str] = set()


def _validate_gift(params: dict[str, Any]) -> None:
    if not isinstance(params.get("name"), str):
        raise ValueError("name: required")


def _grant_gift(
    session: Any,
    *,
    actor: Principal,
    member_id: int,
    params: dict[str, Any],
    source_type: str,
    source_id: str,
    key: str,
) -> dict[str, Any]:
    if key not in _granted_keys:
        _granted_keys.add(key)
        GRANTS.append((member_id, key, params))
    return {"key": key}


def register_test_gift() -> None:
    registry.register("test_gift", validate=_validate_gift, grant=_grant_gift)
    GRANTS.clear()
    _granted_keys.clear()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc,arg-type]


PROGRAM: dict[str, Any] = {
    "window": {"kind": "rolling_months", "months": 12},
    "settlement": {"mode": "realtime"},
    "grace_days": 0,
}
MONTHS_12 = {"kind": "months", "months": 12}
LEVELS: list[dict[str, Any]] = [
    {"code": "base", "name_zh": "普卡", "name_en": "Classic", "rank": 0},
    {
        "code": "silver",
        "name_zh": "银卡",
        "name_en": "Silver",
        "rank": 1,
        "upgrade": {"basis": "growth", "min": 1000},
        "retention": {"basis": "growth", "min": 500},
        "validity": MONTHS_12,
        "points_multiplier": "1.2",
    },
    {
        "code": "gold",
        "name_zh": "金卡",
        "name_en": "Gold",
        "rank": 2,
        "upgrade": {"any": [{"basis": "growth", "min": 5000}, {"basis": "single_order", "min": "3000.00"}]},
        "retention": {"basis": "spend", "min": "2000.00"},
        "validity": MONTHS_12,
        "points_multiplier": "1.5",
        "upgrade_gifts": [{"kind": "test_gift", "name": "gold welcome"}],
    },
    {
        "code": "platinum",
        "name_zh": "白金卡",
        "name_en": "Platinum",
        "rank": 3,
        "upgrade": {"all": [{"basis": "spend", "min": "20000.00"}, {"basis": "growth", "min": 0}]},
        "retention": {"basis": "spend", "min": "10000.00"},
        "validity": MONTHS_12,
        "downgrade_to": "base",
        "points_multiplier": "2",
        "upgrade_gifts": [
            {"kind": "test_gift", "name": "platinum box"},
            {"kind": "test_gift", "name": "lounge"},
        ],
    },
]


def set_up_ladder(
    client: Any, headers: dict[str, str], *, program: dict[str, Any] | None = None, **level_changes: Any
) -> dict[str, int]:
    """The standard program and levels; ``gold={"validity": ...}`` changes one level. Returns ids."""
    r = client.put("/api/v1/tiers/program", json={**PROGRAM, **(program or {})}, headers=headers)
    assert r.status_code == 200, r.text
    ids = {}
    for level in LEVELS:
        body = {**level, **level_changes.get(level["code"], {})}
        r = client.post("/api/v1/tiers/levels", json=body, headers=headers)
        assert r.status_code == 201, r.text
        ids[level["code"]] = r.json()["id"]
    return ids


def enroll(client: Any, headers: dict[str, str], **fields: Any) -> int:
    r = client.post("/api/v1/members", json={"enroll_channel": "store", **fields}, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def buy(
    client: Any,
    headers: dict[str, str],
    member_id: int,
    amount: str,
    number: str,
    *,
    paid_at: datetime | None = None,
    store: str = "alpha-s1",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_number": number,
        "store_code": store,
        "channel": "store",
        "member_id": member_id,
        "items": [
            {"sku": "SKU-1", "name": "商品", "quantity": 1, "list_price": amount, "deal_price": amount}
        ],
        "payments": [{"method": "wechat_pay", "amount": amount}],
    }
    if paid_at is not None:
        body["paid_at"] = paid_at.isoformat()
    r = client.post("/api/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def earn_growth(db: Database, brand_id: int, member_id: int, amount: int, key: str) -> None:
    """Growth value through the points ledger (which emits ``points.earned``)."""
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        if s.scalars(select(PointType).where(PointType.code == "growth")).first() is None:
            s.add(
                PointType(
                    brand_id=brand_id,
                    code="growth",
                    name="成长值",
                    kind="growth",
                    expiry_policy={"kind": "never"},
                    spendable=False,
                )
            )
            s.flush()
        ledger.earn(
            s,
            actor=actor,
            member_id=member_id,
            point_type="growth",
            amount=amount,
            key=key,
            source_type="test",
        )


def dispatch(db: Database) -> None:
    """Run the outbox handlers for every pending event (order.paid, points.earned …)."""
    while dispatch_pending(db).taken:
        pass


def evaluate(db: Database, brand_id: int, member_id: int) -> MemberTier | None:
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        return service.evaluate_member(s, actor=actor, member_id=member_id, reason="test")


def level_of(client: Any, headers: dict[str, str], member_id: int) -> dict[str, Any]:
    r = client.get(f"/api/v1/members/{member_id}/tier", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def reasons(client: Any, headers: dict[str, str], member_id: int) -> list[tuple[str, str | None, str]]:
    """``(reason, from, to)`` of the member's changes, oldest first."""
    r = client.get(f"/api/v1/members/{member_id}/tier/history", headers=headers)
    assert r.status_code == 200, r.text
    return [(c["reason"], c["from_level"], c["to_level"]) for c in reversed(r.json()["items"])]


def money(value: str) -> Decimal:
    return Decimal(value)
