"""Bucketing of per-person figures for the distribution analyses (members' orders and sales in
``ltv``, people's event counts and sums in ``event_analysis``), written once with Ibis.

* **Edges** e₀ < … < eₙ give the buckets [e₀, e₁) … [eₙ, ∞); values below e₀ are left out.
* **Automatic**: ``buckets`` buckets from the smallest to the largest value. Equal-width
  ``[lo + k·w, lo + (k+1)·w)`` with w = (hi − lo) ÷ n, the largest value closing the last bucket;
  or, for whole-number figures (``whole``), a whole-number width w = ⌈(hi − lo + 1) ÷ n⌉ so that
  every bucket holds the same number of possible values (there may then be fewer than n buckets).

The module only shapes values it is given; it reads no table and knows no brand.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def bucketed(
    values: ir.Table, *, edges: list[float] | None, buckets: int, whole: bool = False, counted: str
) -> ir.Table:
    """``values`` (one row per counted subject, its figure in ``value``) per bucket: ``bucket``
    (0-based), the number of subjects as ``counted``, ``low`` and ``high`` (null for the open last
    bucket of ``edges``); lowest bucket first, empty buckets absent."""
    if edges:
        bucket = ibis.literal(-1)
        for i, edge in enumerate(edges):
            bucket = ibis.cases((values.value >= edge, i), else_=bucket)
        kept = values.mutate(bucket=bucket).filter(lambda t: t.bucket >= 0)
        out = kept.group_by("bucket").aggregate(**{counted: kept.count()})
        # Typed literals: a bare 1.0 is a DECIMAL in DuckDB, and a cast to float64 would be dropped.
        lows = ibis.cases(*((out.bucket == i, ibis.literal(e, "float64")) for i, e in enumerate(edges)))
        highs = ibis.cases(
            *((out.bucket == i, ibis.literal(e, "float64")) for i, e in enumerate(edges[1:])),
            else_=ibis.null("float64"),
        )
        out = out.select("bucket", counted, low=lows.cast("float64"), high=highs.cast("float64"))
        return out.order_by("bucket")
    n = buckets
    spread = values.mutate(
        lo=values.value.min().over(ibis.window()), hi=values.value.max().over(ibis.window())
    )
    if whole:
        width = ((spread.hi - spread.lo + n) / n).floor()
        index = ((spread.value - spread.lo) / width).floor().cast("int64")
    else:
        width = (spread.hi - spread.lo) / n
        raw = ibis.cases((width == 0, 0), else_=((spread.value - spread.lo) / width).floor().cast("int64"))
        index = ibis.least(raw, n - 1)
    placed = spread.mutate(bucket=index, width=width.cast("float64"))
    grouped = placed.group_by("bucket").aggregate(
        **{counted: placed.count()}, lo=placed.lo.max(), width=placed.width.max()
    )
    out = grouped.select(
        bucket=grouped.bucket.cast("int64"),
        **{counted: grouped[counted]},
        low=(grouped.lo + grouped.bucket * grouped.width).cast("float64"),
        high=(grouped.lo + (grouped.bucket + 1) * grouped.width).cast("float64"),
    )
    return out.order_by("bucket")
