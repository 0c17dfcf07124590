"""Request bodies shared by the order tests."""

from __future__ import annotations

from typing import Any


def order_body(number: str = "POS-1", store: str = "alpha-s1", **overrides: Any) -> dict[str, Any]:
    """Two lines: 2 × 80.00 (list 100.00) and 1 × 40.00 (list 50.00); a 20.00 coupon; 180.00 paid."""
    body: dict[str, Any] = {
        "order_number": number,
        "store_code": store,
        "channel": "store",
        "paid_at": "2026-03-15T06:30:00Z",
        "items": [
            {"sku": "TS-1", "name": "T恤", "quantity": 2, "list_price": "100.00", "deal_price": "80.00"},
            {"sku": "CAP-1", "name": "帽子", "quantity": 1, "list_price": "50.00", "deal_price": "40.00"},
        ],
        "discounts": [{"kind": "coupon", "code": "SPRING20", "amount": "20.00"}],
        "payments": [{"method": "wechat_pay", "amount": "150.00"}, {"method": "cash", "amount": "30.00"}],
    }
    body.update(overrides)
    return body
