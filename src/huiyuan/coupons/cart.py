"""The cart evaluator: which of a member's coupons apply to a cart, the best combination of them, and
what a chosen set takes off each line.

Owns the inputs (``CartLine``, ``Cart``, ``Candidate``), the results (``Evaluation``,
``Application`` and their parts), ``evaluate``, ``apply`` and the errors ``apply`` raises. Pure
functions over dataclasses: no database, no clock (the cart carries its instant ``at``), no I/O.
Money is ``Decimal`` yuan at the edges and integer fen inside (``coupons.cart_search``).

Amounts. A line's net amount is quantity × unit price − what promotions already took off it
(``CartLine.discount``). A coupon's eligible lines are those its conditions select with a net amount
left (``Conditions.matches_line``); its *eligible amount* is what those lines have left at the moment
the coupon is applied.

Application order. The coupons of a set are applied one after the other, in stages:

1. ``gift_item`` — adds a free item, takes no money off, so its ``min_spend`` sees the amounts after
   promotions only;
2. ``amount_off`` and ``threshold`` — fixed sums;
3. ``percent_off`` — on what the earlier coupons left, so a percentage never discounts money another
   coupon already took off;
4. ``free_shipping`` — on the shipping fee left (``min_spend`` on its eligible lines after all the
   goods coupons).

Within a stage: the higher spend requirement (the larger of ``min_spend`` and ``threshold``) first,
then by template, then the soonest-expiring coupon, then the lowest coupon id.

A coupon's ``min_spend`` and ``threshold`` are checked on its eligible amount after promotions and
after the coupons applied before it: 满300减50 followed by 满200减20 needs 300 for the first and 200
left after it for the second. ``percent_off`` takes its percentage of the eligible amount left
(rounded half up to the fen, then capped). No discount exceeds the eligible amount. The discount is
allocated to the eligible lines in proportion to what each has left, by largest remainder to the fen
(ties to the earlier line), so the parts add up to the discount and no line goes below zero.
A coupon applies in a set only when it gives something there (money, shipping or a gift).

Stacking. An ``exclusive`` coupon is used alone. ``stackable`` coupons combine with each other, at
most ``per_order_limit`` of one template.

Best combination. ``evaluate`` picks, among all allowed sets whose coupons all apply, the one with the
largest benefit — goods discount + shipping discount + gift value (value × quantity) — then the fewest
coupons, then the soonest-expiring (the sets' expiry instants compared sorted, earliest first), then
the lowest coupon ids. The search is exact and hand-written (see ``coupons.cart_search``; no library
does this): 20 candidates take tens of search nodes, a few milliseconds at worst. Past ``MAX_STEPS``
(wallets of hundreds of stackable coupons) it answers the best combination found so far and says so
(``Evaluation.exact`` false). ``apply`` gives the same allocation for the set it is given, or raises
``CouponCombinationNotAllowed`` / ``CouponNotApplicable`` (422, with the coupon ids and reasons).

Reasons a coupon does not apply on its own: ``not-yet-valid``, ``expired``, ``scene``, ``store``,
``channel``, ``tier``, ``paid-plan``, ``weekday``, ``hours`` (local time in the brand's zone),
``no-eligible-items``, ``min-spend``, ``threshold``, ``no-shipping-fee``, ``no-discount``. The
coupon's window is the candidate's ``valid_from``/``valid_to`` (the template's ``validity`` was turned
into them at issue).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from huiyuan.coupons.cart_search import Compiled, Outcome, after, allocate, best_combination, step
from huiyuan.coupons.rules import AmountOff, FreeShipping, GiftItem, PercentOff, TemplateRules, Threshold
from huiyuan.kit.errors import AppError

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# A bound on the search's work for wallets far larger than usual, in coupon steps (a few µs each):
# 20 candidates take a few hundred, at most a few thousand in our random trials.
MAX_STEPS = 20_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class CouponNotApplicable(AppError):
    status = 422
    code = "coupon-not-applicable"
    title = "A coupon does not apply to this order"


class CouponCombinationNotAllowed(AppError):
    status = 422
    code = "coupon-combination-not-allowed"
    title = "These coupons cannot be used together"


def _fen(value: Decimal, name: str) -> int:
    if not isinstance(value, Decimal) or not value.is_finite() or value != value.quantize(CENT):
        raise ValueError(f"{name} must be a Decimal with at most 2 decimal places, not {value!r}")
    return int(value * 100)


def _yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(CENT)


# --- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartLine:
    """An order line; ``discount`` is what promotions already took off it (yuan)."""

    line_id: str
    sku: str
    quantity: int
    unit_price: Decimal
    category_path: str | None = None
    product_brand: str | None = None
    discount: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise ValueError(f"line {self.line_id}: quantity must be at least 1")
        if _fen(self.unit_price, "unit_price") < 0 or _fen(self.discount, "discount") < 0:
            raise ValueError(f"line {self.line_id}: unit_price and discount must not be negative")
        if self.discount > self.unit_price * self.quantity:
            raise ValueError(f"line {self.line_id}: the discount exceeds the line amount")

    @property
    def net_fen(self) -> int:
        return _fen(self.unit_price, "unit_price") * self.quantity - _fen(self.discount, "discount")


@dataclass(frozen=True, slots=True, kw_only=True)
class Cart:
    """What the member is about to buy, where, when (``at``, aware) and as whom."""

    lines: Sequence[CartLine]
    at: datetime
    shipping_fee: Decimal = ZERO
    store_id: int | None = None
    scene: str = "online"
    channel: str | None = None
    tier: str | None = None
    paid_plan: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("the cart's instant 'at' must be timezone-aware")
        if _fen(self.shipping_fee, "shipping_fee") < 0:
            raise ValueError("the shipping fee must not be negative")
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line ids must not repeat")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A coupon the member holds: its template's rules and its own validity window."""

    coupon_id: int
    template_id: int
    rules: TemplateRules
    valid_from: datetime
    valid_to: datetime


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineDiscount:
    line_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Gift:
    """A free item to add to the order; ``unit_value`` is one unit's price for cost accounting."""

    coupon_id: int
    sku: str
    quantity: int
    unit_value: Decimal


@dataclass(frozen=True, slots=True)
class AppliedCoupon:
    """One coupon of a set: what it takes off the goods (per eligible line), off shipping, and its gift."""

    coupon_id: int
    template_id: int
    kind: str
    discount: Decimal
    shipping_discount: Decimal
    gift_value: Decimal
    lines: tuple[LineDiscount, ...]
    gift: Gift | None = None

    @property
    def benefit(self) -> Decimal:
        """What the coupon is worth on this order; ``rules.split_cost`` splits it between the funders."""
        return self.discount + self.shipping_discount + self.gift_value


@dataclass(frozen=True, slots=True)
class Totals:
    """goods − promotions − coupon_discount + shipping − shipping_discount = payable."""

    goods: Decimal
    promotions: Decimal
    coupon_discount: Decimal
    shipping: Decimal
    shipping_discount: Decimal
    gift_value: Decimal
    payable: Decimal


@dataclass(frozen=True, slots=True)
class Application:
    """A set of coupons applied to a cart, in application order."""

    coupons: tuple[AppliedCoupon, ...]
    totals: Totals

    @property
    def coupon_ids(self) -> list[int]:
        return [c.coupon_id for c in self.coupons]

    @property
    def gifts(self) -> list[Gift]:
        return [c.gift for c in self.coupons if c.gift is not None]

    @property
    def benefit(self) -> Decimal:
        return sum((c.benefit for c in self.coupons), ZERO)

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept with a lock: decimals as strings."""
        return {
            "coupons": [
                {
                    "coupon_id": c.coupon_id,
                    "template_id": c.template_id,
                    "kind": c.kind,
                    "discount": str(c.discount),
                    "shipping_discount": str(c.shipping_discount),
                    "gift_value": str(c.gift_value),
                    "lines": [{"line_id": ld.line_id, "amount": str(ld.amount)} for ld in c.lines],
                    "gift": None
                    if c.gift is None
                    else {
                        "sku": c.gift.sku,
                        "quantity": c.gift.quantity,
                        "unit_value": str(c.gift.unit_value),
                    },
                }
                for c in self.coupons
            ],
            "totals": {name: str(getattr(self.totals, name)) for name in Totals.__dataclass_fields__},
        }


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """Whether a coupon applies to the cart on its own, why not, and what it gives alone."""

    coupon_id: int
    template_id: int
    applies: bool
    reasons: tuple[str, ...]
    discount: Decimal = ZERO
    shipping_discount: Decimal = ZERO
    gift_value: Decimal = ZERO

    @property
    def benefit(self) -> Decimal:
        return self.discount + self.shipping_discount + self.gift_value


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every candidate on its own (in the order given) and the best allowed combination."""

    candidates: tuple[CandidateResult, ...]
    best: Application
    explored: int = field(default=0, compare=False)  # search nodes visited, for tests and tuning
    exact: bool = True  # False: the search ran out of steps and ``best`` is the best it found


# --- compiling -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    cart: Cart
    net: tuple[int, ...]
    shipping: int
    weekday: int
    minute: int


def _context(cart: Cart, tz: ZoneInfo) -> _Context:
    local = cart.at.astimezone(tz)
    return _Context(
        cart=cart,
        net=tuple(line.net_fen for line in cart.lines),
        shipping=_fen(cart.shipping_fee, "shipping_fee"),
        weekday=local.isoweekday(),
        minute=local.hour * 60 + local.minute,
    )


def _compile(candidate: Candidate, ctx: _Context) -> tuple[Compiled, list[str]]:
    """The candidate in fen, and the reasons it does not apply on its own (none: ``standalone`` set)."""
    cart, rules = ctx.cart, candidate.rules
    cond, discount = rules.conditions, rules.discount
    reasons: list[str] = []
    if cart.at < candidate.valid_from:
        reasons.append("not-yet-valid")
    if cart.at >= candidate.valid_to:
        reasons.append("expired")
    checks = (
        ("scene", not cond.scenes or cart.scene in cond.scenes),
        (
            "store",
            (not cond.store_ids or cart.store_id in cond.store_ids)
            and cart.store_id not in cond.exclude_store_ids,
        ),
        ("channel", not cond.channels or cart.channel in cond.channels),
        ("tier", not cond.tiers or cart.tier in cond.tiers),
        ("paid-plan", not cond.paid_plans or cart.paid_plan in cond.paid_plans),
        ("weekday", not cond.weekdays or ctx.weekday in cond.weekdays),
        ("hours", cond.at_hour(ctx.minute)),
    )
    reasons += [name for name, holds in checks if not holds]
    lines = tuple(
        i
        for i, line in enumerate(cart.lines)
        if ctx.net[i] > 0 and cond.matches_line(line.sku, line.product_brand, line.category_path)
    )
    compiled = Compiled(
        coupon_id=candidate.coupon_id,
        template_id=candidate.template_id,
        kind=discount.kind,
        exclusive=rules.stacking == "exclusive",
        limit=rules.per_order_limit,
        lines=lines,
        min_spend=_fen(cond.min_spend, "min_spend") if cond.min_spend is not None else 0,
        amount=_amount(discount),
        threshold=_fen(discount.threshold, "threshold") if isinstance(discount, Threshold) else 0,
        repeat=isinstance(discount, Threshold) and discount.repeat,
        max_times=(discount.max_times or 0) if isinstance(discount, Threshold) else 0,
        percent=int(discount.percent * 100) if isinstance(discount, PercentOff) else 0,
        cap=_cap(discount),
        expires=(candidate.valid_to - _EPOCH) // _MICROSECOND,
        rules=rules,
    )
    if not lines:
        reasons.append("no-eligible-items")
    else:
        outcome = step(compiled, ctx.net, ctx.shipping)
        if outcome.reason is not None:
            reasons.append(outcome.reason)
        elif not reasons:
            compiled.standalone = outcome
    return compiled, reasons


def _cap(discount: Any) -> int:
    cap = discount.cap if isinstance(discount, PercentOff | FreeShipping) else None
    return _fen(cap, "cap") if cap is not None else 0


def _amount(discount: Any) -> int:
    if isinstance(discount, AmountOff | Threshold):
        return _fen(discount.amount, "amount")
    if isinstance(discount, GiftItem):
        return _fen(discount.value, "value") * discount.quantity
    return 0


class _Refused(NamedTuple):
    coupon: Compiled
    reason: str
    before: list[int]


def _run(ctx: _Context, chosen: Sequence[Compiled]) -> Application | _Refused:
    """Apply ``chosen`` in application order; the first coupon that gives nothing stops it."""
    remaining, shipping = ctx.net, ctx.shipping
    applied: list[AppliedCoupon] = []
    for c in sorted(chosen, key=lambda c: c.order):
        outcome: Outcome = step(c, remaining, shipping)
        if outcome.reason is not None:
            return _Refused(c, outcome.reason, [a.coupon_id for a in applied])
        parts = allocate(c, outcome.goods, remaining) if outcome.goods else [0] * len(c.lines)
        gift = None
        if c.kind == "gift_item":
            d = c.rules.discount
            assert isinstance(d, GiftItem)
            gift = Gift(c.coupon_id, d.sku, d.quantity, d.value)
        applied.append(
            AppliedCoupon(
                coupon_id=c.coupon_id,
                template_id=c.template_id,
                kind=c.kind,
                discount=_yuan(outcome.goods),
                shipping_discount=_yuan(outcome.shipping),
                gift_value=_yuan(outcome.gift),
                lines=tuple(
                    LineDiscount(ctx.cart.lines[i].line_id, _yuan(p))
                    for i, p in zip(c.lines, parts, strict=True)
                ),
                gift=gift,
            )
        )
        remaining = after(c, outcome, remaining)
        shipping -= outcome.shipping
    goods = sum(_fen(line.unit_price, "unit_price") * line.quantity for line in ctx.cart.lines)
    promotions = sum(_fen(line.discount, "discount") for line in ctx.cart.lines)
    coupon_discount = sum(ctx.net) - sum(remaining)
    shipping_discount = ctx.shipping - shipping
    totals = Totals(
        goods=_yuan(goods),
        promotions=_yuan(promotions),
        coupon_discount=_yuan(coupon_discount),
        shipping=_yuan(ctx.shipping),
        shipping_discount=_yuan(shipping_discount),
        gift_value=sum((a.gift_value for a in applied), ZERO),
        payable=_yuan(goods - promotions - coupon_discount + ctx.shipping - shipping_discount),
    )
    return Application(coupons=tuple(applied), totals=totals)


def _check_templates(candidates: Sequence[Candidate]) -> None:
    # A template's rules are fixed once it has coupons; the search relies on its stacking and limit.
    seen: dict[int, tuple[str, int]] = {}
    for c in candidates:
        mode = (c.rules.stacking, c.rules.per_order_limit)
        if seen.setdefault(c.template_id, mode) != mode:
            raise ValueError(f"coupons of template {c.template_id} disagree on stacking or per_order_limit")


# --- the API -------------------------------------------------------------------------------------


def evaluate(
    cart: Cart, candidates: Sequence[Candidate], tz: ZoneInfo, *, max_steps: int = MAX_STEPS
) -> Evaluation:
    """Each candidate on its own and the best allowed combination (``tz``: the brand's zone); once the
    search has taken ``max_steps`` coupon steps, the best combination found so far (``exact`` false)."""
    ids = [c.coupon_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("a coupon must not be a candidate twice")
    _check_templates(candidates)
    ctx = _context(cart, tz)
    compiled = [_compile(c, ctx) for c in candidates]
    results = []
    for c, reasons in compiled:
        o = c.standalone
        results.append(
            CandidateResult(
                coupon_id=c.coupon_id,
                template_id=c.template_id,
                applies=o is not None,
                reasons=tuple(reasons),
                discount=_yuan(o.goods) if o else ZERO,
                shipping_discount=_yuan(o.shipping) if o else ZERO,
                gift_value=_yuan(o.gift) if o else ZERO,
            )
        )
    found = best_combination(
        [c for c, _ in compiled if c.standalone is not None], ctx.net, ctx.shipping, max_steps=max_steps
    )
    best = _run(ctx, found.coupons)
    assert isinstance(best, Application), "the search chose a set that does not apply"
    return Evaluation(candidates=tuple(results), best=best, explored=found.explored, exact=found.exact)


def apply(cart: Cart, chosen: Sequence[Candidate], tz: ZoneInfo) -> Application:
    """What the coupons the member picked take off the cart; ``CouponCombinationNotAllowed`` when the set
    breaks stacking or a per-order limit, ``CouponNotApplicable`` when a coupon does not apply in it."""
    ids = [c.coupon_id for c in chosen]
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise CouponCombinationNotAllowed(
            f"Coupon {repeated[0]} is chosen more than once.", reason="repeated", coupon_ids=repeated
        )
    exclusive = [c.coupon_id for c in chosen if c.rules.stacking == "exclusive"]
    if exclusive and len(chosen) > 1:
        raise CouponCombinationNotAllowed(
            f"Coupon {exclusive[0]} cannot be combined with other coupons.",
            reason="exclusive",
            coupon_ids=exclusive,
        )
    per_template = Counter(c.template_id for c in chosen)
    for c in chosen:
        if per_template[c.template_id] > c.rules.per_order_limit:
            raise CouponCombinationNotAllowed(
                f"At most {c.rules.per_order_limit} coupon(s) of template {c.template_id} may be used on one "
                f"order, not {per_template[c.template_id]}.",
                reason="per-order-limit",
                template_id=c.template_id,
                coupon_ids=[x.coupon_id for x in chosen if x.template_id == c.template_id],
            )
    _check_templates(chosen)
    ctx = _context(cart, tz)
    compiled: list[Compiled] = []
    for candidate in chosen:
        one, reasons = _compile(candidate, ctx)
        if reasons:
            raise CouponNotApplicable(
                f"Coupon {one.coupon_id} does not apply to this order: {', '.join(reasons)}.",
                coupon_id=one.coupon_id,
                reasons=reasons,
            )
        compiled.append(one)
    result = _run(ctx, compiled)
    if isinstance(result, _Refused):
        raise CouponNotApplicable(
            f"Coupon {result.coupon.coupon_id} does not apply after the coupons applied before it "
            f"({', '.join(map(str, result.before))}): {result.reason}.",
            coupon_id=result.coupon.coupon_id,
            reasons=[result.reason],
            applied_before=result.before,
        )
    return result
