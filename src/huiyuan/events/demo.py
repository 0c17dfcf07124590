"""Demo events: each brand's tracking plan, an app source beside the web source the demo already has,
and N realistic Segment messages over the history — web and app sessions of members and anonymous
visitors (campaign clicks, page and screen views, product views, element clicks for heatmaps, add to
cart, checkout, order paid, logins with identify), written through the same path as the tracking API
(``spec.Preparer`` checks them against the plan, ``store.write`` appends them in bulk).

A few messages break the plan on purpose (a price sent as text) and one event is unplanned
("Wishlist Added"), so the plan's violations and approval list have something to show. Deterministic:
the same seed, end and N give the same messages. Must not print; progress goes to callbacks.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from huiyuan.events import service, sources, store
from huiyuan.events.spec import Envelope, Preparer
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Scope, system_for_brand

CHUNK = 5_000
PHASE = "events"
LOCAL = timedelta(hours=8)


@dataclass
class EventsBrand:
    """What the generator needs of one demo brand."""

    id: int
    code: str
    web_source_id: int
    member_numbers: Sequence[str]
    enroll_day: Sequence[int]  # days after the history's start
    skus: Sequence[Any]  # ``demo.catalog.Sku``: sku, name, list_fen, weight
    hours: Sequence[int]  # 24 weights of the local hour


PLAN: list[dict[str, Any]] = [
    {
        "name": "Product Viewed",
        "description": "商品详情曝光",
        "properties": [
            {"name": "sku", "type": "string", "required": True},
            {"name": "name", "type": "string"},
            {"name": "price", "type": "number", "required": True},
            {"name": "currency", "type": "string", "enum": ["CNY"]},
        ],
    },
    {
        "name": "Product Added",
        "description": "加入购物车",
        "properties": [
            {"name": "sku", "type": "string", "required": True},
            {"name": "price", "type": "number", "required": True},
            {"name": "quantity", "type": "integer", "required": True},
        ],
    },
    {
        "name": "Checkout Started",
        "description": "发起结算",
        "properties": [
            {"name": "value", "type": "number", "required": True},
            {"name": "items", "type": "integer", "required": True},
        ],
    },
    {
        "name": "Order Paid",
        "description": "支付成功",
        "properties": [
            {"name": "order_id", "type": "string", "required": True},
            {"name": "value", "type": "number", "required": True},
            {"name": "items", "type": "integer"},
            {"name": "payment_method", "type": "string", "enum": ["wechat_pay", "alipay", "card"]},
        ],
    },
    {
        "name": "Campaign Clicked",
        "description": "营销触达点击",
        "properties": [
            {"name": "campaign", "type": "string", "required": True},
            {
                "name": "channel",
                "type": "string",
                "required": True,
                "enum": ["sms", "wechat", "app_push", "email"],
            },
        ],
    },
    {
        "name": "Element Clicked",
        "description": "元素点击（热力图）",
        "properties": [
            {"name": "selector", "type": "string", "required": True},
            {"name": "x", "type": "integer", "required": True},
            {"name": "y", "type": "integer", "required": True},
            {"name": "viewport_width", "type": "integer", "required": True},
            {"name": "viewport_height", "type": "integer", "required": True},
        ],
    },
]
CAMPAIGNS = ("618年中大促", "双11预热", "会员日", "新品首发", "生日礼遇", "积分兑换周")
CAMPAIGN_CHANNELS = ("sms", "wechat", "app_push", "email")
PAYMENTS = ("wechat_pay", "alipay", "card")
HOME_CLICKS = (
    ("#banner", "立即抢购", 600, 180),
    ("#nav-new", "新品", 320, 64),
    ("#nav-member", "会员中心", 1080, 64),
    ("body > main > section:nth-of-type(2) > a:nth-of-type(1)", "热销榜", 200, 640),
    ("#coupon-entry", "领券", 980, 420),
)
VIEWPORTS = ((390, 844), (414, 896), (1440, 900), (1920, 1080), (375, 667))


def _define_plan(db: Database, brand: EventsBrand) -> int:
    """The brand's plan, and an app source (the web source exists since the demo's setup)."""
    actor = system_for_brand(brand.id)
    with db.unit_of_work(actor.scope) as s:
        for definition in PLAN:
            service.define_event(s, actor=actor, **definition)
        return sources.create_source(s, actor=actor, name="会员 App", kind="app").source.id


class _Session:
    """Builds the messages of one visit."""

    def __init__(self, rng: random.Random, brand: EventsBrand, at: datetime, app: bool) -> None:
        self.rng = rng
        self.brand = brand
        self.at = at
        self.app = app
        self.messages: list[dict[str, Any]] = []
        self.viewport = rng.choice(VIEWPORTS)

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, who: dict[str, str], message: dict[str, Any]) -> None:
        self.at += timedelta(seconds=self.rng.randint(3, 90))
        context: dict[str, Any] = (
            {"app": {"name": "会员App", "version": "5.2.0"}, "os": {"name": "iOS"}, "locale": "zh-CN"}
            if self.app
            else {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4)", "locale": "zh-CN"}
        )
        self.messages.append(
            {**message, **who, "messageId": self._id(), "timestamp": self.at.isoformat(), "context": context}
        )

    def view(self, who: dict[str, str], name: str, path: str) -> None:
        if self.app:
            self.add(who, {"type": "screen", "name": name})
        else:
            self.add(who, {"type": "page", "name": name, "properties": {"path": path}})


def _visit(
    rng: random.Random,
    brand: EventsBrand,
    sku_weights: list[float],
    who: dict[str, str],
    at: datetime,
    app: bool,
) -> list[dict[str, Any]]:
    s = _Session(rng, brand, at, app)
    if "userId" in who and rng.random() < 0.15:  # signs in on this device
        s.add(who, {"type": "identify", "traits": {"member_number": who["userId"]}})
    if rng.random() < 0.2:
        campaign = {"campaign": rng.choice(CAMPAIGNS), "channel": rng.choice(CAMPAIGN_CHANNELS)}
        s.add(who, {"type": "track", "event": "Campaign Clicked", "properties": campaign})
    s.view(who, "首页", "/")
    if not app and rng.random() < 0.25:
        selector, text, x, y = rng.choice(HOME_CLICKS)
        width, height = s.viewport
        click = {
            "selector": selector,
            "text": text,
            "x": min(width - 1, int(x * width / 1440) + rng.randint(-12, 12)),
            "y": max(0, y + rng.randint(-10, 10)),
            "viewport_width": width,
            "viewport_height": height,
        }
        s.add(who, {"type": "track", "event": "Element Clicked", "properties": click})
    cart: list[tuple[Any, int]] = []
    for _ in range(rng.choices((0, 1, 2, 3, 4), (2, 4, 3, 2, 1))[0]):
        sku = rng.choices(brand.skus, cum_weights=sku_weights)[0]
        price: Any = sku.list_fen / 100
        if rng.random() < 0.005:
            price = f"¥{price:.0f}"  # an old app version sends text: a plan violation
        s.view(who, "商品详情", f"/p/{sku.sku}")
        viewed = {"sku": sku.sku, "name": sku.name, "price": price, "currency": "CNY"}
        s.add(who, {"type": "track", "event": "Product Viewed", "properties": viewed})
        if rng.random() < 0.03:
            s.add(who, {"type": "track", "event": "Wishlist Added", "properties": {"sku": sku.sku}})
        if rng.random() < 0.3:
            qty = rng.choices((1, 2, 3), (8, 2, 1))[0]
            added = {"sku": sku.sku, "price": sku.list_fen / 100, "quantity": qty}
            s.add(who, {"type": "track", "event": "Product Added", "properties": added})
            cart.append((sku, qty))
    if cart and rng.random() < 0.45:
        value = round(sum(k.list_fen * q for k, q in cart) / 100, 2)
        items = sum(q for _, q in cart)
        s.add(
            who,
            {"type": "track", "event": "Checkout Started", "properties": {"value": value, "items": items}},
        )
        if rng.random() < 0.65:
            paid = {"order_id": f"W{s._id()[:12].upper()}", "value": value, "items": items}
            paid["payment_method"] = rng.choice(PAYMENTS)
            s.add(who, {"type": "track", "event": "Order Paid", "properties": paid})
    return s.messages


def build_events(
    db: Database,
    brands: list[EventsBrand],
    *,
    seed: int,
    start: datetime,
    end: datetime,
    total: int,
    start_phase: Callable[[str, int], None] = lambda phase, total: None,
    advance: Callable[[str, int], None] = lambda phase, rows: None,
    finish_phase: Callable[[str], None] = lambda phase: None,
) -> dict[str, dict[str, int]]:
    """About ``total`` events across the brands (by member count); counts per brand code."""
    start_phase(PHASE, total)
    members = sum(len(b.member_numbers) for b in brands) or 1
    n_days = max(1, (end - start).days)
    counts: dict[str, dict[str, int]] = {}
    for brand in brands:
        app_source = _define_plan(db, brand)
        target = round(total * len(brand.member_numbers) / members)
        rng = random.Random(f"{seed}:{brand.code}:events")
        devices = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in brand.member_numbers]
        visitors = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(2 * len(devices) + 10)]
        sku_weights = list(itertools.accumulate(k.weight for k in brand.skus))
        hour_weights = list(itertools.accumulate(brand.hours))
        written = flagged = quarantined = 0
        pending: dict[int, list[dict[str, Any]]] = {brand.web_source_id: [], app_source: []}
        while written + sum(len(v) for v in pending.values()) < target:
            day = min(n_days - 1, int(n_days * rng.random() ** 0.6))  # busier towards the end
            hour = rng.choices(range(24), cum_weights=hour_weights)[0]
            at = start + timedelta(days=day, hours=hour, seconds=rng.randrange(3600)) - LOCAL
            member = rng.randrange(len(brand.member_numbers)) if brand.member_numbers else -1
            if member >= 0 and rng.random() < 0.45 and brand.enroll_day[member] <= day:
                who = {"userId": brand.member_numbers[member], "anonymousId": devices[member]}
            else:
                who = {"anonymousId": rng.choice(visitors)}
            app = rng.random() < 0.4
            visit = _visit(rng, brand, sku_weights, who, min(at, end), app)
            pending[app_source if app else brand.web_source_id].extend(visit)
            for source_id, messages in pending.items():
                if len(messages) >= CHUNK:
                    f, q = _write(db, brand.id, source_id, messages)
                    written, flagged, quarantined = written + len(messages), flagged + f, quarantined + q
                    advance(PHASE, len(messages))
                    pending[source_id] = []
        for source_id, messages in pending.items():
            if messages:
                f, q = _write(db, brand.id, source_id, messages)
                written, flagged, quarantined = written + len(messages), flagged + f, quarantined + q
                advance(PHASE, len(messages))
        counts[brand.code] = {"events": written, "events_flagged": flagged, "events_quarantined": quarantined}
    finish_phase(PHASE)
    return counts


def _write(db: Database, brand_id: int, source_id: int, messages: list[dict[str, Any]]) -> tuple[int, int]:
    """One chunk through the ingestion path (history: each message received at its own time)."""
    latest = max(datetime.fromisoformat(m["timestamp"]) for m in messages)
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        source = sources.source_for_system(s, source_id)
        prepared = Preparer(
            brand_id=brand_id,
            source_id=source_id,
            plan=service.compiled_plan(s, source),
            dialect=store.dialect_of(s),
            received_at=latest,
            backfill=True,
            dedup=source.dedup,
        ).add(Envelope(messages))
        service.append_lock(s)
        store.write(s, brand_id=brand_id, prepared=prepared, at=latest)
    return prepared.flagged, len(prepared.quarantined)
