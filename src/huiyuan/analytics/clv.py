"""Predictive customer lifetime value: BG/NBD for the number of future purchases and P(alive),
Gamma-Gamma for the value of a purchase, combined into CLV over a horizon.

Written by hand on numpy and scipy because the field's packages do not fit: ``lifetimes`` is
unmaintained and breaks with current setuptools, ``pymc-marketing`` brings a probabilistic
programming stack for two closed-form likelihoods. The formulas are those of the papers, written
out below and in ``docs/analytics.md``:

* Fader, Hardie and Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
  Pareto/NBD Model", Marketing Science 24(2) — BG/NBD, equations (6), (10) and (13).
* Fader, Hardie and Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
  Journal of Marketing Research 42(4), and Fader and Hardie (2013), "The Gamma-Gamma Model of
  Monetary Value" — Gamma-Gamma.

Time is in weeks (days / 7). A customer's summary over a calibration period is ``x`` (repeat
purchases: distinct purchase days after the first), ``t_x`` (the last purchase, weeks after the
first) and ``T`` (the calibration end, weeks after the first purchase); ``m_x`` is the mean value of
the repeat purchase days (a day's amounts summed first).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

Array = NDArray[np.float64]


class CLVInputError(ValueError):
    """The transactions or the options cannot be fitted (empty, all after the calibration end …)."""


@dataclass(frozen=True, slots=True)
class Summary:
    """Per customer, in the same order: the repeat-purchase summary of the calibration period."""

    customers: list[str]
    x: Array
    t_x: Array
    T: Array
    monetary: Array  # mean value of the repeat purchase days; 0 where x == 0

    def __len__(self) -> int:
        return len(self.customers)


@dataclass(frozen=True, slots=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int

    def p_alive(self, x: Array, t_x: Array, T: Array) -> Array:
        """P(the customer is still active at T | x, t_x, T) — equation (13) of the paper's note:
        1 / (1 + [x > 0] · a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x))."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        odds = np.where(
            x > 0,
            self.a
            / np.maximum(self.b + x - 1, 1e-12)
            * ((self.alpha + T) / (self.alpha + t_x)) ** (self.r + x),
            0.0,
        )
        return 1.0 / (1.0 + odds)

    def expected_purchases(self, t: float, x: Array, t_x: Array, T: Array) -> Array:
        """E[Y(t) | x, t_x, T]: purchases expected in the next ``t`` weeks — equation (10):

        (a + b + x − 1) / (a − 1) · [1 − ((α + T) / (α + T + t))^(r + x) · ₂F₁(r + x, b + x; a + b + x − 1;
        t / (α + T + t))] / (1 + [x > 0] · a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x))
        """
        # With a < 1 both (a − 1) and the bracket are negative: the ratio is still the expectation.
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        return np.asarray(head * body * self.p_alive(x, t_x, T), dtype=float)

    def expected_purchases_new(self, t: float) -> float:
        """E[X(t)] for a customer just acquired — equation (7):
        (a + b − 1) / (a − 1) · [1 − (α / (α + t))^r · ₂F₁(r, b; a + b − 1; t / (α + t))]."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        return float(
            (a + b - 1)
            / (a - 1)
            * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (alpha + t)))
        )


@dataclass(frozen=True, slots=True)
class GammaGamma:
    p: float
    q: float
    v: float
    log_likelihood: float
    customers: int

    def expected_spend(self, x: Array, monetary: Array) -> Array:
        """E[M | x, m_x] = (p (v + x m_x)) / (p x + q − 1); for x = 0 the population mean
        p v / (q − 1)."""
        x, m = np.asarray(x, dtype=float), np.asarray(monetary, dtype=float)
        return np.asarray((self.p * (self.v + x * m)) / (self.p * x + self.q - 1), dtype=float)


# -- summary -----------------------------------------------------------------------------------------


def summarise(transactions: Iterable[tuple[str, date, float]], calibration_end: date) -> Summary:
    """The calibration summary of (customer, day, amount) rows: rows after ``calibration_end`` are
    left out; several rows on one day are one purchase of their summed amount."""
    days: dict[str, dict[date, float]] = {}
    for customer, day, amount in transactions:
        if day > calibration_end:
            continue
        per_day = days.setdefault(customer, {})
        per_day[day] = per_day.get(day, 0.0) + float(amount)
    if not days:
        raise CLVInputError("No transaction on or before the calibration end.")
    customers = sorted(days, key=_natural)
    n = len(customers)
    x, t_x, T, m = (np.zeros(n) for _ in range(4))
    for i, customer in enumerate(customers):
        ordered = sorted(days[customer])
        first, last = ordered[0], ordered[-1]
        x[i] = len(ordered) - 1
        t_x[i] = (last - first).days / 7
        T[i] = (calibration_end - first).days / 7
        if len(ordered) > 1:
            m[i] = sum(days[customer][d] for d in ordered[1:]) / (len(ordered) - 1)
    return Summary(customers, x, t_x, T, m)


def _natural(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


# -- BG/NBD ------------------------------------------------------------------------------------------


def bgnbd_log_likelihood(params: Array, x: Array, t_x: Array, T: Array) -> float:
    """Σ ln L over customers, equation (6) of the paper:

    L = Γ(r + x) α^r / Γ(r) · [ B(a, b + x) / B(a, b) · (α + T)^−(r + x)
                               + [x > 0] · B(a + 1, b + x − 1) / B(a, b) · (α + t_x)^−(r + x) ]

    The bracket's two terms are added in log space (log-sum-exp) so that long histories neither
    overflow nor underflow.
    """
    r, alpha, a, b = params
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    beta_ab = special.betaln(a, b)
    first = special.betaln(a, b + x) - beta_ab - (r + x) * np.log(alpha + T)
    with np.errstate(invalid="ignore", divide="ignore"):
        second = np.where(
            x > 0,
            special.betaln(a + 1, np.maximum(b + x - 1, 1e-300)) - beta_ab - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return float(np.sum(a1 + np.logaddexp(first, second)))


def fit_bgnbd(summary: Summary, *, penalizer: float = 0.0) -> BGNBD:
    """Maximum likelihood over log-parameters (so all four stay positive), Nelder-Mead then BFGS
    from the same starting point; ``penalizer`` adds an L2 penalty on the parameters."""
    if len(summary) == 0:
        raise CLVInputError("No customers to fit.")
    x, t_x, T = summary.x, summary.t_x, summary.T
    if np.any(T <= 0) and np.all(T <= 0):
        raise CLVInputError("Every customer's first purchase is on the calibration end: T is 0.")

    def negative(log_params: Array) -> float:
        params = np.exp(log_params)
        value = -bgnbd_log_likelihood(params, x, t_x, T) + penalizer * float(np.sum(params**2))
        return value if math.isfinite(value) else 1e300

    start = np.log(np.array([1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0]))
    found = _minimise(negative, start)
    r, alpha, a, b = (float(v) for v in np.exp(found.x))
    return BGNBD(r, alpha, a, b, -float(found.fun), len(summary))


# -- Gamma-Gamma -------------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(params: Array, x: Array, m: Array) -> float:
    """Σ ln L over repeat buyers (x > 0):

    L = Γ(p x + q) / (Γ(p x) Γ(q)) · v^q · m_x^(p x − 1) · x^(p x) / (v + x m_x)^(p x + q)
    """
    p, q, v = params
    px = p * x
    return float(
        np.sum(
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(v)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(v + x * m)
        )
    )


def fit_gamma_gamma(summary: Summary) -> GammaGamma:
    """Gamma-Gamma on the repeat buyers (x > 0), whose mean purchase value must be positive."""
    repeat = summary.x > 0
    x, m = summary.x[repeat], summary.monetary[repeat]
    if len(x) == 0:
        raise CLVInputError("No repeat buyer in the calibration period: Gamma-Gamma has nothing to fit.")
    if np.any(m <= 0):
        raise CLVInputError("Gamma-Gamma needs positive purchase values; some repeat buyers have none.")

    def negative(log_params: Array) -> float:
        value = -gamma_gamma_log_likelihood(np.exp(log_params), x, m)
        return value if math.isfinite(value) else 1e300

    found = _minimise(negative, np.log(np.array([1.0, 1.0, max(float(np.mean(m)), 1.0)])))
    p, q, v = (float(val) for val in np.exp(found.x))
    return GammaGamma(p, q, v, -float(found.fun), len(x))


def _minimise(fn: object, start: Array) -> optimize.OptimizeResult:
    coarse = optimize.minimize(
        fn, start, method="Nelder-Mead", options={"maxiter": 20_000, "xatol": 1e-10, "fatol": 1e-10}
    )
    fine = optimize.minimize(fn, coarse.x, method="BFGS", options={"gtol": 1e-8})
    return fine if fine.fun <= coarse.fun else coarse


# -- CLV ---------------------------------------------------------------------------------------------


def clv(
    bgnbd: BGNBD,
    gamma_gamma: GammaGamma,
    summary: Summary,
    *,
    days: int = 365,
    monthly_discount_rate: float = 0.0,
) -> Array:
    """Expected value of each customer over the next ``days``: the horizon is cut into months of
    30 days (the last one shorter), and month k's expected purchases E[Y(t_k)] − E[Y(t_{k−1})] times
    the expected spend are discounted by (1 + d)^k:

    CLV = Σ_k (E[Y(t_k)] − E[Y(t_{k−1})]) · E[M] / (1 + d)^k
    """
    if days <= 0:
        raise CLVInputError("The horizon must be at least one day.")
    if monthly_discount_rate < 0:
        raise CLVInputError("The discount rate cannot be negative.")
    spend = gamma_gamma.expected_spend(summary.x, summary.monetary)
    total = np.zeros(len(summary))
    before = np.zeros(len(summary))
    for k, end in enumerate([*range(30, days, 30), days], start=1):
        upto = bgnbd.expected_purchases(end / 7, summary.x, summary.t_x, summary.T)
        total += (upto - before) * spend / (1 + monthly_discount_rate) ** k
        before = upto
    return total
