"""The real client libraries, unchanged, against a live uvicorn serving huiyuan: Segment's
``segment-analytics-python`` (``host=``; synchronous and batched through its consumer thread) and
RudderStack's ``rudder-sdk-python`` (``dataPlaneUrl``, gzip on). Also how they see our errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.events.models import Event
from huiyuan.kit.db import Database
from tests.conftest import World
from tests.events.conftest import make_source


def stored(db: Database) -> list[Event]:
    with db.unit_of_work(write=False) as s:
        return list(s.scalars(select(Event).order_by(Event.id)))


def test_segment_analytics_python(live_server: str, world: World) -> None:
    from segment import analytics
    from segment.analytics.request import APIError

    brand = world.brands[0]
    _sid, key = make_source(world.db, brand.id, kind="server")
    sync = analytics.Client(key, host=live_server, sync_mode=True)
    sync.identify(
        "LX00000001",
        {"name": "王芳", "tier": "gold"},
        context={"externalIds": [{"id": "o1", "type": "wechat_openid", "collection": "users"}]},
    )
    sync.track("LX00000001", "Order Paid", {"order_id": "SO-1", "value": 399.0}, message_id="seg-1")
    sync.track("LX00000001", "Order Paid", {"order_id": "SO-1", "value": 399.0}, message_id="seg-1")  # resent
    sync.page("LX00000001", "product", "商品详情", {"path": "/p/1"})
    sync.screen("LX00000001", "home", "首页")
    sync.group("LX00000001", "company-1", {"name": "蓝溪"})
    sync.alias("anon-9", "LX00000001")

    # The batching client: a consumer thread posts to /v1/batch; flush waits until it did.
    batched = analytics.Client(key, host=live_server, upload_size=10, max_retries=1)
    for i in range(25):
        batched.track(anonymous_id=f"a-{i}", event="Product Viewed", properties={"i": i})
    batched.flush()
    batched.join()

    events = stored(world.db)
    assert [e.type for e in events[:6]] == ["identify", "track", "page", "screen", "group", "alias"]
    identify = events[0]
    assert identify.traits == {"name": "王芳", "tier": "gold"}
    assert identify.external_ids == [{"id": "o1", "type": "wechat_openid", "collection": "users"}]
    assert identify.context is not None and identify.context["library"]["name"] == "analytics-python"
    assert events[1].message_id == "seg-1" and events[1].properties == {"order_id": "SO-1", "value": 399.0}
    assert events[2].event == "商品详情" and events[2].extra == {"category": "product", "integrations": {}}
    assert events[5].previous_id == "anon-9"
    assert sorted(int(e.properties["i"]) for e in events[6:] if e.properties) == list(range(25))
    assert all(e.brand_id == brand.id for e in events)
    # Their clocks agree with ours: corrected timestamps stay within a few seconds of receipt.
    assert all(abs(e.timestamp - e.received_at) < timedelta(seconds=5) for e in events)

    bad = analytics.Client("hyw_not-a-key", host=live_server, sync_mode=True)
    with pytest.raises(APIError) as caught:
        bad.track("u", "x")
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"


def test_rudder_sdk_python_with_gzip(live_server: str, world: World) -> None:
    from rudderstack.analytics.client import Client as RudderClient
    from rudderstack.analytics.request import APIError

    brand = world.brands[1]
    _sid, key = make_source(world.db, brand.id, kind="app")
    client: Any = RudderClient(key, host=live_server, gzip=True, sync_mode=True)
    stamped = datetime.now(UTC) - timedelta(minutes=5)
    client.identify("MU00000007", {"city": "杭州"}, anonymous_id="dev-7")
    client.track("MU00000007", "Coupon Redeemed", {"code": "C-1"}, timestamp=stamped, message_id="rs-1")
    client.page("MU00000007", "member", "会员中心", {"path": "/member"})
    client.screen("MU00000007", name="积分商城")
    client.group("MU00000007", "store-3", {"name": "西湖店"})
    client.alias("dev-7", "MU00000007")

    async_client: Any = RudderClient(key, host=live_server, gzip=True, upload_size=20, max_retries=1)
    for i in range(30):
        async_client.track(anonymous_id=f"r-{i}", event="Screen Tapped", properties={"i": i})
    async_client.flush()
    async_client.join()

    events = stored(world.db)
    assert [e.type for e in events[:6]] == ["identify", "track", "page", "screen", "group", "alias"]
    assert events[0].traits == {"city": "杭州"} and events[0].anonymous_id == "dev-7"  # from context.traits
    track = events[1]
    assert track.message_id == "rs-1"
    assert track.original_timestamp is not None and abs(track.original_timestamp - stamped) < timedelta(
        seconds=1
    )
    assert abs(track.timestamp - (track.received_at - timedelta(minutes=5))) < timedelta(seconds=5)
    assert len(events) == 36 and all(e.brand_id == brand.id for e in events)

    with pytest.raises(APIError) as caught:
        RudderClient("hyw_nope", host=live_server, gzip=True, sync_mode=True).track("u", "x")
    assert caught.value.status == 401
