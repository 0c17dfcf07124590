"""Response shapes of the profile API: search matches, the profile, the timeline, salient features."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from huiyuan.identity.schemas import SurvivorOut
from huiyuan.members.schemas import MemberOut
from huiyuan.orders.schemas import OrderSummary
from huiyuan.points.schemas import PointBalanceOut

TimelineKind = Literal["event", "order", "points", "coupon"]
TIMELINE_KINDS: tuple[TimelineKind, ...] = ("event", "order", "points", "coupon")

# -- search ----------------------------------------------------------------------------------------


class MemberBrief(BaseModel):
    id: int
    member_number: str
    name: str | None
    status: str
    phone: str | None = Field(description="Masked unless the caller has members:pii")


class SearchMatch(BaseModel):
    oneid: int | None = Field(description="None while the member is not in the identity graph yet")
    member: MemberBrief | None = Field(description="None for a person known only by identifiers")
    matched_by: str = Field(
        description="What the query matched: oneid, member_number, phone, name, or a type"
    )


class SearchOut(BaseModel):
    q: str
    type: str = Field(description="The type searched: as asked, or detected from the query")
    detected: bool = Field(description="True when the type was detected from the query")
    matches: list[SearchMatch]


# -- profile ---------------------------------------------------------------------------------------


class ProfileIdentifier(BaseModel):
    id: int = Field(description="Node id in the identity graph")
    type: str
    value: str = Field(description="Masked unless the caller has members:pii (member numbers are shown)")
    source: str
    confidence: float = Field(description="Highest confidence of the active links that hold it (1.0 alone)")
    first_seen_at: datetime
    last_seen_at: datetime


class GraphNode(BaseModel):
    id: str
    type: str
    label: str
    oneid: int
    own: bool = Field(description="False: the other end of a removed/refused link, in another OneID")


class GraphEdge(BaseModel):
    id: str
    source: str
    target: str
    link_source: str
    rule: str
    confidence: float
    status: str


class GraphOut(BaseModel):
    """Nodes and edges as ECharts' graph series takes them (categories = identifier types)."""

    categories: list[str]
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class TierOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    rank: int
    valid_until: datetime | None


class PaidPlanOut(BaseModel):
    plan_code: str
    level_code: str
    ends_at: datetime


class LoyaltyOut(BaseModel):
    member_id: int
    points: list[PointBalanceOut] | None = Field(description="None without points:read")
    tier: TierOut | None
    paid_plan: PaidPlanOut | None


class CategoryFeature(BaseModel):
    category_id: int
    code: str
    name: str
    orders: int
    spend: Decimal
    share: float = Field(description="Smoothed share of the person's spend")
    brand_share: float = Field(description="Smoothed share of the brand's spend")
    lift: float


class HourFeature(BaseModel):
    hour: int = Field(description="Hour of day in the brand's time zone")
    count: int
    share: float
    brand_share: float
    lift: float


class PreferenceFeature(BaseModel):
    key: str = Field(description="The channel code, or the store code")
    name: str | None = None
    orders: int
    share: float = Field(description="Share of the person's orders")
    brand_share: float
    lift: float


class RankFeature(BaseModel):
    value: float
    percentile: float = Field(description="Mid-rank percentile among the brand's buyers (0–100)")


class FeaturesOut(BaseModel):
    buyers: int = Field(description="Population: the brand's members with at least one order")
    orders: int
    categories: list[CategoryFeature]
    active_hours: list[HourFeature] = Field(description="Top hours by lift")
    hours: list[HourFeature] = Field(description="All 24 hours")
    preferred_channel: PreferenceFeature | None
    preferred_store: PreferenceFeature | None
    aov: RankFeature | None = Field(description="Average net order value (yuan)")
    frequency: RankFeature | None = Field(description="Orders")
    recency: RankFeature | None = Field(
        description="Days since the last order (higher percentile = more recent)"
    )
    method: dict[str, Any]


class ProfileOut(BaseModel):
    oneid: int | None
    requested_oneid: int | None = Field(default=None, description="Set when a merged OneID was asked for")
    status: str | None
    members: list[MemberOut]
    identifiers: list[ProfileIdentifier]
    golden: dict[str, SurvivorOut]
    graph: GraphOut
    loyalty: list[LoyaltyOut] | None
    orders: list[OrderSummary] | None
    features: FeaturesOut | None
    hidden: list[str] = Field(description="Sections left out because the caller lacks their permission")


# -- timeline --------------------------------------------------------------------------------------


class TimelineItem(BaseModel):
    kind: TimelineKind
    id: int = Field(
        description="Id of the row in its own table (events, orders, point entries, coupon events)"
    )
    at: datetime
    member_id: int | None = None
    title: str
    subtype: str | None = Field(default=None, description="Event type, entry kind, coupon event kind …")
    amount: Decimal | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None
    kinds: list[TimelineKind]
    limit: int
