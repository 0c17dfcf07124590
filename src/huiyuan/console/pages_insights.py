"""Console page of the insight scenes (B13): overall, new customers, existing customers, benefit usage
and activities — one page with a scene switcher, a period, key figures against the period before
and a year before, and the scene's charts and tables (also as one CSV download).

Each scene is built from the analyses that already exist — ``kpi`` (totals, trend, breakdown),
``rfm`` (segments, lifecycle), ``ltv`` (cohort value) — and the scene figures of
``analytics.scenes`` (member base, new and returning buyers, coupon cost, points, engagement), run
in-process for the console's brand only. No queries or business rules here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from huiyuan.analytics import kpi, ltv, rfm, scenes
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import (
    Warehouse,
    bar_option,
    blocked,
    label,
    ltv_chart,
    pct,
    pie_option,
    today,
    warehouse,
)
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

SCENES = ("overall", "new", "existing", "benefits", "activities")


@dataclass
class Figure:
    """One key figure: its value now and its change against the period before and a year before."""

    key: str
    label: str
    value: Any
    kind: str = "count"  # count, money, rate
    pop: str = "—"
    yoy: str = "—"


@dataclass
class Block:
    """A chart with the table of its figures."""

    id: str
    title: str
    option: dict[str, Any] | None
    headers: list[str]
    rows: list[list[Any]]
    hint: str = ""


@dataclass
class Scene:
    figures: list[Figure] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    has_data: bool = False


@dataclass
class Periods:
    now: kpi.Period
    previous: kpi.Period
    year_ago: kpi.Period

    @property
    def grain(self) -> kpi.Grain:
        return "week" if (self.now.end - self.now.start).days > 62 else "day"


def change(now: Any, before: Any) -> str:
    """The relative change as ``+12.3%`` (``—`` when there is nothing to compare with)."""
    if now is None or before is None or before == 0:
        return "—"
    p = (float(now) - float(before)) / abs(float(before)) * 100
    return f"{p:+.1f}%"


def _ratio(a: Any, b: Any) -> float | None:
    return float(a) / float(b) if a is not None and b else None


def _money(v: Any) -> float:
    return round(float(v or 0), 2)


def _compared(key: str, text: str, kind: str, values: Sequence[Any]) -> Figure:
    """A figure from its values now, in the period before and a year before."""
    now, before, year_ago = values
    return Figure(key, text, now, kind, change(now, before), change(now, year_ago))


class Builder:
    """Builds one scene for one brand and period from the warehouse."""

    def __init__(self, wh: Warehouse, brand_id: int, periods: Periods, lang: str) -> None:
        self.wh, self.brand_id, self.p, self.lang = wh, brand_id, periods, lang
        self.orders = wh.table("fact_orders")

    def t(self, key: str, **params: Any) -> str:
        return translate(self.lang, key, **params)

    def each(
        self, fn: Callable[[kpi.Period], dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return fn(self.p.now), fn(self.p.previous), fn(self.p.year_ago)

    def one(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        return (self.wh.rows(fn, *args) or [{}])[0]

    # -- pieces ------------------------------------------------------------------------------------

    def totals(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return self.each(lambda p: self.one(kpi.totals, self.orders, self.brand_id, p))

    def base(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        members = self.wh.table("dim_member")
        return self.each(lambda p: self.one(scenes.member_base, self.orders, members, self.brand_id, p))

    def by_kind(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        def rows(p: kpi.Period) -> dict[str, Any]:
            return {r["kind"]: r for r in self.wh.rows(scenes.buyers_by_kind, self.orders, self.brand_id, p)}

        return self.each(rows)

    def trend_block(self) -> Block:
        rows = self.wh.rows(kpi.trend, self.orders, self.brand_id, self.p.now, self.p.grain)
        sales, buyers = self.t("analytics.m.sales"), self.t("analytics.m.buyers")
        option = bar_option(
            [r["bucket"] for r in rows],
            [
                {"name": sales, "type": "line", "data": [_money(r["sales"]) for r in rows]},
                {"name": buyers, "axis": 1, "data": [r["buyers"] for r in rows]},
            ],
        )
        return Block(
            "scene-trend",
            self.t("analytics.trend_title"),
            option,
            [self.t("analysis.bucket"), sales, self.t("analytics.m.orders"), buyers],
            [[r["bucket"], _money(r["sales"]), r["orders"], r["buyers"]] for r in rows],
        )

    def channel_block(self) -> Block:
        stores = self.wh.table("dim_store")
        rows = self.wh.rows(kpi.breakdown, self.orders, self.brand_id, self.p.now, "channel", stores=stores)
        names = [label(self.lang, "channel", r["value"]) for r in rows]
        sales = self.t("analytics.m.sales")
        return Block(
            "scene-channels",
            self.t("analytics.channels_title"),
            bar_option(names, [{"name": sales, "data": [_money(r["sales"]) for r in rows]}]),
            [self.t("analysis.channel"), sales, self.t("analytics.m.orders"), self.t("analytics.m.buyers")],
            [[n, _money(r["sales"]), r["orders"], r["buyers"]] for n, r in zip(names, rows, strict=True)],
        )

    def lifecycle_block(self) -> Block:
        request = rfm.LifecycleRequest(as_of=self.p.now.end)
        counts = {
            r["state"]: r["members"]
            for r in self.wh.rows(scenes.lifecycle_states, self.orders, self.brand_id, request)
        }
        zh = self.lang == "zh"
        items = [(rfm.LIFECYCLE_LABELS[s][0 if zh else 1], counts.get(s, 0)) for s in rfm.LIFECYCLE]
        return Block(
            "scene-lifecycle",
            self.t("analytics.lifecycle_title"),
            pie_option(self.t("analytics.members"), items),
            [self.t("analysis.state"), self.t("analytics.members")],
            [list(i) for i in items],
        )

    def rfm_block(self) -> Block:
        request = rfm.RFMRequest(as_of=self.p.now.end)
        rows = self.wh.rows(scenes.rfm_segments, self.orders, self.brand_id, request)
        labels = {code: (zh if self.lang == "zh" else en) for code, zh, en in rfm.SEGMENTS.values()}
        names = [labels[r["segment"]] for r in rows]
        members = self.t("analytics.members")
        return Block(
            "scene-rfm",
            self.t("analytics.rfm_title"),
            bar_option(names, [{"name": members, "data": [r["members"] for r in rows]}], horizontal=True),
            [self.t("analysis.segment"), members, self.t("analysis.share"), self.t("analysis.monetary")],
            [
                [n, r["members"], pct(r["share"]), _money(r["monetary"])]
                for n, r in zip(names, rows, strict=True)
            ],
            self.t("analytics.rfm_hint"),
        )

    def buyers_block(self, kinds: dict[str, Any]) -> Block:
        names = [self.t(f"analysis.buyer.{k}") for k in ("new", "returning")]
        rows = [kinds.get(k, {}) for k in ("new", "returning")]
        buyers, sales = self.t("analytics.m.buyers"), self.t("analytics.m.sales")
        return Block(
            "scene-buyers",
            self.t("analysis.buyers_title"),
            bar_option(
                names,
                [
                    {"name": buyers, "data": [r.get("buyers", 0) for r in rows]},
                    {"name": sales, "axis": 1, "data": [_money(r.get("sales")) for r in rows]},
                ],
            ),
            [self.t("analysis.buyer_kind"), buyers, self.t("analytics.m.orders"), sales],
            [
                [n, r.get("buyers", 0), r.get("orders", 0), _money(r.get("sales"))]
                for n, r in zip(names, rows, strict=True)
            ],
            self.t("analysis.buyers_hint"),
        )

    # -- scenes ------------------------------------------------------------------------------------

    def overall(self) -> Scene:
        totals = self.totals()
        base = self.base()
        figures = [
            _compared(
                m, self.t(f"analytics.m.{m}"), kind, (totals[0].get(m), totals[1].get(m), totals[2].get(m))
            )
            for m, kind in (
                ("sales", "money"),
                ("orders", "count"),
                ("buyers", "count"),
                ("aov", "money"),
                ("aspt", "money"),
                ("upt", "number"),
                ("repurchase_rate", "rate"),
                ("discount_rate", "rate"),
            )
        ]
        now = base[0]
        figures += [
            Figure("members", self.t("analysis.f.members"), now.get("members") or 0),
            _compared(
                "new_members",
                self.t("analysis.f.new_members"),
                "count",
                tuple(b.get("new_members") or 0 for b in base),
            ),
            _compared(
                "member_sales_share",
                self.t("analysis.f.member_sales_share"),
                "rate",
                tuple(_ratio(b.get("member_sales"), b.get("sales")) for b in base),
            ),
        ]
        has_data = bool(totals[0].get("orders")) or bool(now.get("members"))
        blocks = [self.trend_block(), self.channel_block(), self.lifecycle_block()] if has_data else []
        return Scene(figures, blocks, has_data)

    def new(self) -> Scene:
        base = self.base()
        kinds = self.by_kind()
        members = self.wh.table("dim_member")
        conversion = self.one(scenes.new_member_conversion, self.orders, members, self.brand_id, self.p.now)
        new = [k.get("new", {}) for k in kinds]
        figures = [
            _compared(
                "new_members",
                self.t("analysis.f.new_members"),
                "count",
                tuple(b.get("new_members") or 0 for b in base),
            ),
            Figure("converted", self.t("analysis.f.converted"), conversion.get("converted") or 0),
            Figure(
                "conversion_rate",
                self.t("analysis.f.conversion_rate"),
                _ratio(conversion.get("converted") or 0, conversion.get("enrolled")),
                "rate",
            ),
            _compared(
                "new_buyers", self.t("analysis.f.new_buyers"), "count", tuple(n.get("buyers", 0) for n in new)
            ),
            _compared(
                "new_buyer_sales",
                self.t("analysis.f.new_buyer_sales"),
                "money",
                tuple(_money(n.get("sales")) for n in new),
            ),
            _compared(
                "new_buyer_aov",
                self.t("analysis.f.new_buyer_aov"),
                "money",
                tuple(_ratio(n.get("sales"), n.get("buyers")) for n in new),
            ),
        ]
        has_data = bool(base[0].get("new_members")) or bool(new[0].get("buyers"))
        blocks = [self.enrollment_block(), self.buyers_block(kinds[0]), self.ltv_block()] if has_data else []
        return Scene(figures, blocks, has_data)

    def enrollment_block(self) -> Block:
        members = self.wh.table("dim_member")
        rows = self.wh.rows(scenes.enrollments, members, self.brand_id, self.p.now, self.p.grain)
        buckets = sorted({r["bucket"] for r in rows})
        channels = sorted({r["channel"] for r in rows})
        cells = {(r["bucket"], r["channel"]): r["members"] for r in rows}
        series = [
            {
                "name": label(self.lang, "channel", c),
                "stack": "enrolled",
                "data": [cells.get((b, c), 0) for b in buckets],
            }
            for c in channels
        ]
        return Block(
            "scene-enrollments",
            self.t("analysis.enrollments_title"),
            bar_option(buckets, series),
            [self.t("analysis.bucket"), self.t("analysis.channel"), self.t("analytics.members")],
            [[r["bucket"], label(self.lang, "channel", r["channel"]), r["members"]] for r in rows],
        )

    def ltv_block(self) -> Block:
        end = self.p.now.end
        year, month = (end.year, end.month - 5) if end.month > 5 else (end.year - 1, end.month + 7)
        request = ltv.LTVRequest(enrolled_from=date(year, month, 1), enrolled_to=end, as_of=end, months=6)
        rows = self.wh.rows(ltv.cohort_ltv, self.orders, self.wh.table("dim_member"), self.brand_id, request)
        cohorts, option = ltv_chart(self.lang, rows, request.months)
        months = [self.t("analysis.unit_n.month", n=k) for k in range(request.months + 1)]
        return Block(
            "scene-ltv",
            self.t("analysis.ltv_result"),
            option,
            [self.t("analysis.cohort"), self.t("analysis.cohort_size"), *months],
            [[c["cohort"], c["size"], *c["ltv"]] for c in cohorts],
            self.t("analysis.ltv_hint"),
        )

    def existing(self) -> Scene:
        kinds = self.by_kind()
        old = [k.get("returning", {}) for k in kinds]
        member_sales = [sum(float(r.get("sales") or 0) for r in k.values()) for k in kinds]
        figures = [
            _compared(
                "returning_buyers",
                self.t("analysis.f.returning_buyers"),
                "count",
                tuple(o.get("buyers", 0) for o in old),
            ),
            _compared(
                "returning_orders",
                self.t("analysis.f.returning_orders"),
                "count",
                tuple(o.get("orders", 0) for o in old),
            ),
            _compared(
                "returning_sales",
                self.t("analysis.f.returning_sales"),
                "money",
                tuple(_money(o.get("sales")) for o in old),
            ),
            _compared(
                "returning_aov",
                self.t("analysis.f.returning_aov"),
                "money",
                tuple(_ratio(o.get("sales"), o.get("buyers")) for o in old),
            ),
            _compared(
                "returning_repeat_rate",
                self.t("analysis.f.returning_repeat_rate"),
                "rate",
                tuple(_ratio(o.get("repeat_buyers"), o.get("buyers")) for o in old),
            ),
            _compared(
                "returning_share",
                self.t("analysis.f.returning_share"),
                "rate",
                tuple(_ratio(o.get("sales"), s) for o, s in zip(old, member_sales, strict=True)),
            ),
        ]
        has_data = bool(kinds[0])
        blocks = [self.buyers_block(kinds[0]), self.rfm_block(), self.lifecycle_block()] if has_data else []
        return Scene(figures, blocks, has_data)

    def benefits(self) -> Scene:
        redemptions, points = self.wh.table("fact_coupon_redemptions"), self.wh.table("fact_points")
        uses = self.each(lambda p: {"rows": self.wh.rows(scenes.coupon_use, redemptions, self.brand_id, p)})
        coupons = tuple(sum(r["coupons"] for r in u["rows"]) for u in uses)
        discount = tuple(_money(sum(float(r["discount"] or 0) for r in u["rows"])) for u in uses)
        flow = self.wh.rows(scenes.points_flow, points, self.brand_id, self.p.now)

        def kind_sum(*kinds: str) -> int:
            return int(sum(r["points"] or 0 for r in flow if r["kind"] in kinds))

        figures = [
            _compared("coupons_redeemed", self.t("analysis.f.coupons_redeemed"), "count", coupons),
            _compared("coupon_cost", self.t("analysis.f.coupon_cost"), "money", discount),
            Figure(
                "coupon_members",
                self.t("analysis.f.coupon_members"),
                sum(r["members"] for r in uses[0]["rows"]),
            ),
            Figure("points_earned", self.t("analysis.f.points_earned"), kind_sum("earn")),
            Figure("points_spent", self.t("analysis.f.points_spent"), -kind_sum("spend", "confirm")),
            Figure("points_expired", self.t("analysis.f.points_expired"), -kind_sum("expire")),
        ]
        has_data = bool(uses[0]["rows"]) or bool(flow)
        if not has_data:
            return Scene(figures, [], False)
        trend = self.wh.rows(scenes.coupon_trend, redemptions, self.brand_id, self.p.now, self.p.grain)
        n_coupons, cost = self.t("analysis.coupons"), self.t("analysis.f.coupon_cost")
        kinds = [label(self.lang, "analysis.coupon_kind", r["coupon_kind"]) for r in uses[0]["rows"]]
        funders = self.wh.rows(scenes.points_earned_by, points, self.brand_id, self.p.now, "funder")
        funder_names = [label(self.lang, "points.funder", r["value"]) for r in funders]
        blocks = [
            Block(
                "scene-coupon-trend",
                self.t("analysis.coupon_trend_title"),
                bar_option(
                    [r["bucket"] for r in trend],
                    [
                        {"name": n_coupons, "data": [r["coupons"] for r in trend]},
                        {
                            "name": cost,
                            "type": "line",
                            "axis": 1,
                            "data": [_money(r["discount"]) for r in trend],
                        },
                    ],
                ),
                [self.t("analysis.bucket"), n_coupons, cost],
                [[r["bucket"], r["coupons"], _money(r["discount"])] for r in trend],
            ),
            Block(
                "scene-coupon-kinds",
                self.t("analysis.coupon_kinds_title"),
                pie_option(
                    n_coupons, [(k, r["coupons"]) for k, r in zip(kinds, uses[0]["rows"], strict=True)]
                ),
                [
                    self.t("analysis.coupon_kind"),
                    n_coupons,
                    self.t("analytics.members"),
                    self.t("analytics.m.orders"),
                    cost,
                ],
                [
                    [k, r["coupons"], r["members"], r["orders"], _money(r["discount"])]
                    for k, r in zip(kinds, uses[0]["rows"], strict=True)
                ],
            ),
            Block(
                "scene-points",
                self.t("analysis.points_title"),
                bar_option(
                    [f"{r['point_type']} · {label(self.lang, 'points.entry_kind', r['kind'])}" for r in flow],
                    [{"name": self.t("analysis.points"), "data": [r["points"] for r in flow]}],
                    horizontal=True,
                ),
                [
                    self.t("analysis.point_type"),
                    self.t("analysis.entry_kind"),
                    self.t("analysis.entries"),
                    self.t("analytics.members"),
                    self.t("analysis.points"),
                ],
                [
                    [
                        r["point_type"],
                        label(self.lang, "points.entry_kind", r["kind"]),
                        r["entries"],
                        r["members"],
                        r["points"],
                    ]
                    for r in flow
                ],
                self.t("analysis.points_hint"),
            ),
            Block(
                "scene-funders",
                self.t("analysis.funders_title"),
                pie_option(
                    self.t("analysis.points"),
                    [(n, r["points"]) for n, r in zip(funder_names, funders, strict=True)],
                ),
                [self.t("analysis.funder"), self.t("analysis.points"), self.t("analytics.members")],
                [[n, r["points"], r["members"]] for n, r in zip(funder_names, funders, strict=True)],
            ),
        ]
        return Scene(figures, blocks, True)

    def activities(self) -> Scene:
        events, points = self.wh.table("fact_events"), self.wh.table("fact_points")
        redemptions = self.wh.table("fact_coupon_redemptions")
        active = self.each(lambda p: self.one(scenes.engagement_totals, events, self.brand_id, p))
        daily = self.wh.rows(scenes.engagement, events, self.brand_id, self.p.now, "day")
        days = (self.p.now.end - self.p.now.start).days + 1
        trend = self.wh.rows(scenes.engagement, events, self.brand_id, self.p.now, self.p.grain)
        top = self.wh.rows(scenes.top_events, events, self.brand_id, self.p.now)
        sources = self.wh.rows(scenes.points_earned_by, points, self.brand_id, self.p.now, "source_type")
        templates = self.wh.rows(scenes.coupon_templates, redemptions, self.brand_id, self.p.now)
        people, n_events = self.t("analysis.people"), self.t("analysis.events")
        figures = [
            _compared(
                "active_people",
                self.t("analysis.f.active_people"),
                "count",
                tuple(a.get("people") or 0 for a in active),
            ),
            _compared("events", n_events, "count", tuple(a.get("events") or 0 for a in active)),
            Figure(
                "daily_active",
                self.t("analysis.f.daily_active"),
                round(sum(r["people"] for r in daily) / days, 1),
                "number",
            ),
            Figure(
                "action_points",
                self.t("analysis.f.action_points"),
                sum(r["points"] or 0 for r in sources if r["value"] == "action"),
            ),
            Figure(
                "campaign_coupons",
                self.t("analysis.f.campaign_coupons"),
                sum(r["coupons"] for r in templates),
            ),
        ]
        has_data = bool(trend) or bool(sources) or bool(templates)
        if not has_data:
            return Scene(figures, [], False)
        blocks = [
            Block(
                "scene-engagement",
                self.t("analysis.engagement_title"),
                bar_option(
                    [r["bucket"] for r in trend],
                    [
                        {"name": people, "type": "line", "data": [r["people"] for r in trend]},
                        {"name": n_events, "axis": 1, "data": [r["events"] for r in trend]},
                    ],
                ),
                [self.t("analysis.bucket"), people, n_events],
                [[r["bucket"], r["people"], r["events"]] for r in trend],
                self.t("analysis.engagement_hint"),
            ),
            Block(
                "scene-top-events",
                self.t("analysis.top_events_title"),
                bar_option(
                    [r["event"] for r in top][::-1],
                    [{"name": people, "data": [r["people"] for r in top][::-1]}],
                    horizontal=True,
                ),
                [self.t("analysis.event"), people, n_events],
                [[r["event"], r["people"], r["events"]] for r in top],
            ),
            Block(
                "scene-point-sources",
                self.t("analysis.point_sources_title"),
                bar_option(
                    [label(self.lang, "analysis.source", r["value"]) for r in sources],
                    [{"name": self.t("analysis.points"), "data": [r["points"] for r in sources]}],
                ),
                [self.t("analysis.source"), self.t("analysis.points"), self.t("analytics.members")],
                [
                    [label(self.lang, "analysis.source", r["value"]), r["points"], r["members"]]
                    for r in sources
                ],
            ),
            Block(
                "scene-templates",
                self.t("analysis.templates_title"),
                None,
                [
                    self.t("analysis.template"),
                    self.t("analysis.coupons"),
                    self.t("analytics.members"),
                    self.t("analysis.f.coupon_cost"),
                ],
                [[r["template_id"], r["coupons"], r["members"], _money(r["discount"])] for r in templates],
            ),
        ]
        return Scene(figures, blocks, True)


def _period(start: date | None, end: date | None, console: Console) -> Periods:
    last = end or today(console)
    first = start or last - timedelta(days=29)
    try:
        now = kpi.Period(start=min(first, last), end=max(first, last))
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    return Periods(now, now.previous("period"), now.previous("year"))


def build(console: Console, scene: str, periods: Periods) -> Scene:
    assert console.brand_id is not None
    with warehouse() as wh:
        builder = Builder(wh, console.brand_id, periods, console.lang)
        built: Scene = getattr(builder, scene)()
    return built


def _scene(value: str) -> str:
    if value not in SCENES:
        raise ValidationFailed(f"scene must be one of {', '.join(SCENES)}")
    return value


@router.get("/console/analytics/insights")
def insights_page(
    request: Request,
    console: Reader,
    scene: Annotated[str, Query(max_length=20)] = "overall",
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
) -> Response:
    scene = _scene(scene)
    periods = _period(start, end, console)
    reason = blocked(console)
    built = build(console, scene, periods) if reason is None else Scene()
    query = f"start={periods.now.start}&end={periods.now.end}"
    return render(
        request,
        "analytics_insights.html",
        {
            "blocked": reason,
            "scenes": SCENES,
            "scene": scene,
            "start": periods.now.start.isoformat(),
            "end": periods.now.end.isoformat(),
            "query": query,
            "built": built,
            "csv": f"/console/analytics/insights.csv?scene={scene}&{query}",
        },
    )


@router.get("/console/analytics/insights.csv")
def insights_csv(
    console: Reader,
    scene: Annotated[str, Query(max_length=20)] = "overall",
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
) -> Response:
    scene = _scene(scene)
    periods = _period(start, end, console)
    reason = blocked(console)
    if reason is not None:
        raise ValidationFailed(translate(console.lang, reason))
    built = build(console, scene, periods)
    t = translate
    figures = (
        t(console.lang, "analysis.figures"),
        (
            t(console.lang, "analytics.metric"),
            t(console.lang, "analytics.current"),
            t(console.lang, "analytics.pop"),
            t(console.lang, "analytics.yoy"),
        ),
        [(f.label, f.value, f.pop, f.yoy) for f in built.figures],
    )
    sections = [figures, *((b.title, tuple(b.headers), [tuple(r) for r in b.rows]) for b in built.blocks)]
    return tables.download(sections, f"insights-{scene}-{periods.now.start}-{periods.now.end}", "csv")
