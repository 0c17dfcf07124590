"""Member-facing tier: a member token reads its own level and progress, and nobody else's."""

from __future__ import annotations

from huiyuan.kit.clock import FrozenClock
from tests.conftest import World
from tests.tiers.helpers import dispatch, earn_growth, enroll, level_of, set_up_ladder


def _token(client, headers, member_id: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/member-tokens", json={"member_id": member_id}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_member_reads_own_tier_and_progress(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    me, other = enroll(client, a.headers), enroll(client, a.headers)
    earn_growth(world.db, a.id, me, 1000, "g-1")
    dispatch(world.db)
    mine = client.get("/api/v1/me/tier", headers=_token(client, a.headers, me))
    assert mine.status_code == 200, mine.text
    assert mine.json() == level_of(client, a.headers, me)
    assert mine.json()["level"]["code"] == "silver"
    theirs = client.get("/api/v1/me/tier", headers=_token(client, a.headers, other)).json()
    assert theirs["level"]["code"] == "base"
    # A staff key is not a member.
    assert client.get("/api/v1/me/tier", headers=a.headers).status_code in (401, 403)
