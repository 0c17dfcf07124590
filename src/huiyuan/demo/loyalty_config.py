"""The demo world's loyalty programme as each brand configures it, through the real configuration
services (audited like any change); ``demo.loyalty`` configures it and then lives it.

Configuration per brand (``LOYALTY``): spendable 积分 ``points`` (yearly clearing: earned in year Y,
gone at the end of Y+1; fair value 0.01 yuan; order points pending 7 days; transferable at one brand)
and 成长值 ``growth`` (never expires); earn rules — 1 point per yuan, double points on the brand's
member day (an exclusive rule with a ×2 multiplier), 1 growth per 10 yuan, a daily check-in worth 5
points, and bonus points at one store funded by the mall (``merchant:…``, registered with its
Chinese name in the brand's merchant registry so clearing names it) or the platform, so clearing
has more than one funder; a four-level tier ladder (growth thresholds over a rolling
12 months, 12-month validity, retention, a points multiplier per level, upgrade gifts); two paid plan
categories, each with a monthly and a yearly level (points multiplier, one-time points).

Must not write history or move the clock: configuration only, at the moment the caller set.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.kit.scope import Principal
from huiyuan.paid import plans as paid_plans
from huiyuan.paid.schemas import CategoryIn
from huiyuan.paid.schemas import LevelIn as PlanLevelIn
from huiyuan.points import config as points_config
from huiyuan.points import merchants as points_merchants
from huiyuan.points.schemas import EarnRuleIn, PointTypeIn
from huiyuan.tiers import configuration as tiers_config
from huiyuan.tiers.schemas import LevelIn as TierLevelIn
from huiyuan.tiers.schemas import ProgramIn

POINTS, GROWTH = "points", "growth"
PENDING_DAYS = 7


@dataclass(frozen=True)
class LoyaltyProfile:
    """How one brand runs its programme."""

    member_day: int  # day of the month with double points
    transferable: bool
    bonus_store: int  # index into the brand's stores of the store with funded bonus points
    bonus_funder: str  # ``merchant:<code>`` or ``platform``
    bonus_name: str
    growth_thresholds: tuple[int, int, int]  # silver, gold, black (growth in 12 months)
    check_in_share: float  # share of members who check in now and then
    plan_prices: tuple[str, str, str, str]  # working monthly/yearly, family monthly/yearly


LOYALTY: dict[str, LoyaltyProfile] = {
    "lanxi": LoyaltyProfile(
        member_day=8,
        transferable=False,
        bonus_store=0,
        bonus_funder="merchant:mall-plaza",
        bonus_name="商场联名积分",
        growth_thresholds=(600, 1200, 2500),
        check_in_share=0.15,
        plan_prices=("19.00", "168.00", "29.00", "268.00"),
    ),
    "mucha": LoyaltyProfile(
        member_day=18,
        transferable=True,
        bonus_store=1,
        bonus_funder="platform",
        bonus_name="平台补贴积分",
        growth_thresholds=(120, 220, 400),
        check_in_share=0.25,
        plan_prices=("15.00", "128.00", "25.00", "198.00"),
    ),
    "yunjian": LoyaltyProfile(
        member_day=28,
        transferable=False,
        bonus_store=0,
        bonus_funder="merchant:mall-mixc",
        bonus_name="商场联名积分",
        growth_thresholds=(600, 1200, 2500),
        check_in_share=0.15,
        plan_prices=("19.00", "168.00", "29.00", "268.00"),
    ),
}

# The malls funding bonus points (``merchant:<code>``), as each brand registers them.
MERCHANTS: dict[str, str] = {
    "mall-plaza": "中心广场购物中心",
    "mall-mixc": "万象城购物中心",
}

TIER_LEVELS: tuple[tuple[str, str, str, str, int], ...] = (
    # code, 中文, English, multiplier, upgrade gift (points)
    ("classic", "普卡", "Classic", "1", 0),
    ("silver", "银卡", "Silver", "1.2", 200),
    ("gold", "金卡", "Gold", "1.5", 500),
    ("black", "黑金", "Black Gold", "2", 1000),
)

# category code, name, customer group, levels: (code, name, multiplier, one-time points, months)
PLAN_CATEGORIES: tuple[tuple[str, str, str, tuple[tuple[str, str, str, int, int], ...]], ...] = (
    (
        "working",
        "白领会员",
        "working",
        (("working-month", "白领月卡", "1.5", 100, 1), ("working-year", "白领年卡", "2", 1000, 12)),
    ),
    (
        "family",
        "家庭会员",
        "family",
        (("family-month", "家庭月卡", "1.5", 200, 1), ("family-year", "家庭年卡", "2", 2000, 12)),
    ),
)


def configure_points(session: Session, *, actor: Principal, code: str, store_ids: list[int]) -> None:
    """Point types, earn rules and the funding merchant of one brand, through the points services."""
    profile = LOYALTY[code]
    if profile.bonus_funder.startswith(points_merchants.FUNDER_PREFIX):
        merchant = profile.bonus_funder.removeprefix(points_merchants.FUNDER_PREFIX)
        points_merchants.create_merchant(
            session,
            actor=actor,
            data=points_merchants.MerchantIn(code=merchant, name=MERCHANTS[merchant]),
        )
    points_config.create_point_type(
        session,
        actor=actor,
        data=PointTypeIn(
            code=POINTS,
            name="积分",
            kind="spendable",
            fair_value=Decimal("0.01"),
            expiry_policy={"kind": "yearly_clearing", "month": 12, "day": 31, "years_after": 1},
            pending_days=PENDING_DAYS,
            transferable=profile.transferable,
            points_per_yuan=100,
            max_pay_ratio=Decimal("0.5"),
        ),
    )
    points_config.create_point_type(
        session,
        actor=actor,
        data=PointTypeIn(
            code=GROWTH,
            name="成长值",
            kind="growth",
            fair_value=Decimal("0"),
            expiry_policy={"kind": "never"},
        ),
    )
    per_yuan = {"kind": "per_amount", "per": "1.00", "points": 1}
    rules: list[tuple[str, str, dict[str, Any]]] = [
        (
            "base-points",
            "消费积分 每1元1分",
            {"trigger": {"kind": "order"}, "point_type": POINTS, "formula": per_yuan},
        ),
        (
            "member-day",
            f"会员日双倍积分（每月{profile.member_day}日）",
            {
                "trigger": {"kind": "order"},
                "point_type": POINTS,
                "conditions": [{"kind": "member_day", "day_of_month": profile.member_day}],
                "formula": per_yuan,
                "multipliers": [{"name": "会员日双倍", "factor": "2"}],
                "exclusive": True,
                "priority": 10,
            },
        ),
        (
            "growth",
            "成长值 每10元1点",
            {
                "trigger": {"kind": "order"},
                "point_type": GROWTH,
                "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
                "apply_member_multipliers": False,
            },
        ),
        (
            "check-in",
            "每日签到",
            {
                "trigger": {"kind": "action", "action": "check_in"},
                "point_type": POINTS,
                "formula": {"kind": "fixed", "points": 5},
                "caps": {"per_day": 5},
                "apply_member_multipliers": False,
            },
        ),
        (
            "store-bonus",
            profile.bonus_name,
            {
                "trigger": {"kind": "order"},
                "point_type": POINTS,
                "conditions": [{"kind": "stores", "in": [store_ids[profile.bonus_store]]}],
                "formula": {"kind": "per_amount", "per": "10.00", "points": 5},
                "apply_member_multipliers": False,
                "caps": {"per_order": 2000},
                "funded_by": profile.bonus_funder,
            },
        ),
    ]
    for rule_code, name, definition in rules:
        points_config.create_rule(
            session, actor=actor, data=EarnRuleIn(code=rule_code, name=name, definition=definition)
        )


def configure_tiers(session: Session, *, actor: Principal, code: str) -> list[tuple[int, int]]:
    """The tier program and its four levels; returns (rank, growth threshold) above the base."""
    profile = LOYALTY[code]
    tiers_config.configure_program(
        session,
        actor=actor,
        data=ProgramIn.model_validate(
            {
                "window": {"kind": "rolling_months", "months": 12},
                "settlement": {"mode": "realtime"},
                "grace_days": 30,
            }
        ),
    )
    thresholds = [0, *profile.growth_thresholds]
    for rank, (level_code, zh, en, multiplier, gift) in enumerate(TIER_LEVELS):
        body: dict[str, Any] = {
            "code": level_code,
            "name_zh": zh,
            "name_en": en,
            "rank": rank,
            "points_multiplier": multiplier,
        }
        if rank > 0:
            body |= {
                "upgrade": {"basis": "growth", "min": thresholds[rank]},
                "retention": {"basis": "growth", "min": thresholds[rank] // 2},
                "validity": {"kind": "months", "months": 12},
                "upgrade_gifts": [{"kind": "points", "point_type": POINTS, "amount": gift}],
            }
        tiers_config.create_level(session, actor=actor, data=TierLevelIn.model_validate(body))
    return [(rank, t) for rank, t in enumerate(thresholds) if rank > 0]


def configure_plans(session: Session, *, actor: Principal, code: str) -> dict[str, tuple[int, str, int]]:
    """Two paid plan categories with a monthly and a yearly level each; code → (id, price, months)."""
    profile = LOYALTY[code]
    prices = iter(profile.plan_prices)
    plan_levels: dict[str, tuple[int, str, int]] = {}
    for cat_code, cat_name, group, levels in PLAN_CATEGORIES:
        category = paid_plans.create_category(
            session, actor=actor, data=CategoryIn(code=cat_code, name=cat_name, customer_group=group)
        )
        for rank, (level_code, name, multiplier, one_time, months) in enumerate(levels, start=1):
            price = next(prices)
            level = paid_plans.create_level(
                session,
                actor=actor,
                data=PlanLevelIn.model_validate(
                    {
                        "category_id": category.id,
                        "code": level_code,
                        "name": name,
                        "rank": rank,
                        "price": price,
                        "validity": {"unit": "month", "count": months},
                        "cooling_off_days": 7,
                        "benefits": {
                            "one_time": [{"kind": "points", "point_type": POINTS, "amount": one_time}],
                            "points_multiplier": multiplier,
                        },
                    }
                ),
            )
            plan_levels[level_code] = (level.id, price, months)
    return plan_levels
