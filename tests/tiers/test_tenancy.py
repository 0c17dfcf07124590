"""Brand beta cannot read or change brand alpha's levels or members' tiers."""

from __future__ import annotations

from sqlalchemy import func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import FrozenClock
from huiyuan.tiers.models import MemberTier
from tests.conftest import World
from tests.tiers.helpers import buy, dispatch, enroll, level_of, set_up_ladder


def test_beta_cannot_touch_alpha_tiers(clock: FrozenClock, client, world: World) -> None:
    a, b = world.brands
    ids = set_up_ladder(client, a.headers)
    set_up_ladder(client, b.headers)
    m = enroll(client, a.headers)
    buy(client, a.headers, m, "3500.00", "O-1")
    dispatch(world.db)
    with world.db.unit_of_work(write=False) as s:
        audits = s.scalar(select(func.count()).select_from(AuditEntry))
    for method, path, body in (
        ("GET", f"/api/v1/tiers/levels/{ids['gold']}", None),
        ("PATCH", f"/api/v1/tiers/levels/{ids['gold']}", {"points_multiplier": "9"}),
        ("GET", f"/api/v1/members/{m}/tier", None),
        ("GET", f"/api/v1/members/{m}/tier/history", None),
        ("POST", f"/api/v1/members/{m}/tier/override", {"level_code": "base", "reason": "x"}),
        ("DELETE", f"/api/v1/members/{m}/tier/override", None),
        ("PUT", f"/api/v1/members/{m}/tier/rfm-score", {"rfm_score": "1"}),
    ):
        r = client.request(method, path, json=body, headers=b.headers)
        assert r.status_code == 404, (method, path, r.text)
    with world.db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == audits
        assert s.scalar(select(func.count()).select_from(MemberTier)) == 1
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "gold" and got["level"]["points_multiplier"] == "1.500"
    assert [lv["code"] for lv in client.get("/api/v1/tiers/levels", headers=b.headers).json()] == list(ids)
    assert all(
        lv["id"] not in ids.values() for lv in client.get("/api/v1/tiers/levels", headers=b.headers).json()
    )
    # An order of beta never moves alpha's member, and the platform picks a brand by header.
    as_beta = {**world.platform_headers, "X-Huiyuan-Brand": "beta"}
    assert client.get(f"/api/v1/members/{m}/tier", headers=as_beta).status_code == 404
    as_alpha = {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}
    assert client.get(f"/api/v1/members/{m}/tier", headers=as_alpha).status_code == 200
    assert client.get("/api/v1/tiers/levels", headers=world.platform_headers).status_code == 422
