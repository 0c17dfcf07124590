"""Member self-service under /api/v1/me/benefits: claim, my benefits, my appointments (book, change,
cancel); a member reaches only their own."""

from __future__ import annotations

from typing import Any

from huiyuan.kit.clock import FrozenClock
from tests.benefits.helpers import member_headers, problem
from tests.conftest import World
from tests.factories import enroll

ME = "/api/v1/me/benefits"
WIFI = {
    "code": "WIFI-DAY",
    "name": "商场 Wi-Fi 日卡",
    "kind": "service",
    "service_type": "wifi",
    "verification": "scan",
    "claimable": True,
    "claim_limit": 1,
    "valid_days": 1,
}
NAILS = {
    "code": "NAILS",
    "name": "美甲护理",
    "kind": "custom",
    "verification": "appointment",
    "appointment": {"slot_minutes": 60, "change_until_minutes": 60},
    "limits": {"uses_per_entitlement": 2},
    "claimable": True,
}


def test_member_self_service(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    for body in (WIFI, NAILS):
        assert client.post("/api/v1/benefits/definitions", json=body, headers=h).status_code == 201
    m, other = enroll(client, h, name="孙八")["id"], enroll(client, h, name="周九")["id"]
    me, them = member_headers(client, world, m), member_headers(client, world, other)
    offers = client.get(f"{ME}/claimable", headers=me).json()
    assert [(o["benefit"], o["can_claim"]) for o in offers] == [("WIFI-DAY", True), ("NAILS", True)]
    assert "unit_cost" not in offers[0]
    claimed = client.post(
        f"{ME}/claim", json={"benefit": "WIFI-DAY", "idempotency_key": "claim-1"}, headers=me
    )
    assert claimed.status_code == 201 and claimed.json()["entitlement"]["source_type"] == "claim"
    replay = client.post(
        f"{ME}/claim", json={"benefit": "WIFI-DAY", "idempotency_key": "claim-1"}, headers=me
    )
    assert replay.status_code == 200
    problem(
        client.post(f"{ME}/claim", json={"benefit": "WIFI-DAY", "idempotency_key": "claim-2"}, headers=me),
        409,
        "benefit-claim-limit",
    )
    nails = client.post(
        f"{ME}/claim", json={"benefit": "NAILS", "idempotency_key": "claim-3"}, headers=me
    ).json()
    mb = nails["entitlement"]["id"]
    mine = client.get(ME, headers=me).json()["items"]
    assert {x["benefit"] for x in mine} == {"WIFI-DAY", "NAILS"}
    assert client.get(ME, headers=them).json()["items"] == []

    booked = client.post(
        f"{ME}/{mb}/appointments",
        json={"starts_at": "2026-03-03T15:00:00+08:00", "idempotency_key": "bk-001"},
        headers=me,
    )
    assert booked.status_code == 201, booked.text
    appointment = booked.json()["id"]
    assert client.get(f"{ME}/{mb}", headers=me).json()["available"] == 1
    problem(
        client.post(
            f"{ME}/{mb}/appointments",
            json={"starts_at": "2026-03-04T15:00:00+08:00", "idempotency_key": "bk-002"},
            headers=them,
        ),
        404,
        "not-found",
    )
    problem(
        client.patch(
            f"{ME}/appointments/{appointment}", json={"starts_at": "2026-03-04T15:00:00+08:00"}, headers=them
        ),
        404,
        "not-found",
    )
    moved = client.patch(
        f"{ME}/appointments/{appointment}", json={"starts_at": "2026-03-04T15:00:00+08:00"}, headers=me
    )
    assert moved.status_code == 200 and moved.json()["changes"] == 1
    listed = client.get(f"{ME}/appointments", headers=me).json()
    assert [(a["id"], a["status"]) for a in listed] == [(appointment, "booked")]
    calendar = client.get(
        "/api/v1/benefits/appointments",
        params={"from": "2026-03-04T00:00:00+08:00", "to": "2026-03-05T00:00:00+08:00"},
        headers=h,
    )
    assert [a["id"] for a in calendar.json()] == [appointment]
    cancelled = client.post(f"{ME}/appointments/{appointment}/cancel", json={"reason": "busy"}, headers=me)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.get(f"{ME}/{mb}", headers=me).json()["available"] == 2
    # Staff routes are not for member tokens.
    problem(client.get("/api/v1/benefits/definitions", headers=me), 403, "permission-denied")
