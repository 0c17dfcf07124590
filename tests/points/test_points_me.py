"""Member-facing points: a member token reads its own summary, lots and entries, nothing else."""

from __future__ import annotations

from tests.conftest import World
from tests.factories import enroll
from tests.points.test_points_api import add_type, grant


def _token(client, headers, member_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/member-tokens", json={"member_id": member_id}, headers=headers)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_member_reads_own_points(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    me = enroll(client, h, name="王小明")["id"]
    other = enroll(client, h, name="李四")["id"]
    grant(client, h, me, 300, "me-0001")
    grant(client, h, me, 200, "me-0002")
    grant(client, h, other, 999, "me-0003")
    mine = _token(client, h, me)

    summary = client.get("/api/v1/me/points", headers=mine)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["member_id"] == me
    assert [(b["point_type"], b["available"], b["expiring_30d"]) for b in body["balances"]] == [
        ("points", 500, 500)
    ]

    lots = client.get("/api/v1/me/points/lots", params={"limit": 1}, headers=mine).json()
    assert [lot["remaining"] for lot in lots["items"]] == [200] and lots["next_cursor"]
    assert "funded_by" not in lots["items"][0] and "unit_value" not in lots["items"][0]
    rest = client.get("/api/v1/me/points/lots", params={"cursor": lots["next_cursor"]}, headers=mine).json()
    assert [lot["remaining"] for lot in rest["items"]] == [300]

    entries = client.get("/api/v1/me/points/entries", headers=mine).json()["items"]
    assert [e["amount"] for e in entries] == [200, 300]
    assert "actor" not in entries[0] and entries[0]["kind"] == "earn"
    assert (
        client.get("/api/v1/me/points/entries", params={"kind": "spend"}, headers=mine).json()["items"] == []
    )

    # a member token is not a staff key, and a staff key is not a member
    assert client.get(f"/api/v1/members/{me}/points", headers=mine).status_code == 403
    assert client.get(f"/api/v1/members/{other}/points", headers=mine).status_code == 403
    assert client.get("/api/v1/me/points", headers=h).status_code == 403
    assert client.get("/api/v1/me/points").status_code == 401
