"""The funnel's documented semantics (``huiyuan.analytics.funnel``) written again in plain Python, one
person and one entry at a time, as the oracle of the property-based funnel test. Slow and obvious on
purpose: no joins, no windows, no shortcuts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Event:
    event_id: int
    person: str
    event: str
    ts: datetime
    date_key: int
    properties: dict[str, Any]


def _matches(e: Event, step: dict[str, Any]) -> bool:
    if e.event != step["event"]:
        return False
    for f in step.get("filters", []):
        value = e.properties.get(f["property"])
        op, want = f.get("op", "eq"), f["value"]
        if op == "eq" and value != want:
            return False
        if op == "neq" and value == want:
            return False
        if op == "in" and value not in want:
            return False
    return True


def _quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (``quantile_cont``)."""
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _entry(
    entry: Event, mine: list[Event], seq: dict[int, int], request: dict[str, Any]
) -> tuple[int, list[Event | None]]:
    """Reached step and the event taken at each step (``None`` where none was)."""
    steps, mode = request["steps"], request.get("mode", "sequential")
    window = timedelta(seconds=request["window_seconds"])
    taken: list[Event | None] = [entry]
    for step in steps[1:]:
        prev = taken[-1]
        cands = []
        for e in mine:
            if not _matches(e, step) or e.ts > entry.ts + window:
                continue
            if mode == "any_order":
                ok = e.ts >= entry.ts
            elif prev is None:
                ok = False
            elif mode == "strict":
                ok = seq[e.event_id] == seq[prev.event_id] + 1
            else:
                ok = e.ts > prev.ts or (e.ts == prev.ts and seq[e.event_id] > seq[prev.event_id])
            if ok:
                cands.append(e)
        taken.append(min(cands, key=lambda e: (e.ts, seq[e.event_id])) if cands else None)
    reached = 1
    for done in taken[1:]:
        if done is None:
            break
        reached += 1
    for ex in request.get("exclusions", []):
        k = ex["after_step"]
        lo, hi = taken[k - 1], taken[k]
        if (
            reached > k
            and lo is not None
            and hi is not None
            and any(_matches(x, ex) and lo.ts < x.ts < hi.ts for x in mine)
        ):
            reached = k
    return reached, taken


def chosen(events: list[Event], request: dict[str, Any]) -> list[tuple[int, list[Event | None]]]:
    """Per person who entered: (reached, events per step) of the furthest, earliest entry."""
    lo, hi = request["start_key"], request["end_key"]
    people: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        people[e.person].append(e)
    out = []
    for mine in people.values():
        mine.sort(key=lambda e: (e.ts, e.event_id))
        if request.get("mode") == "strict":
            seq = {e.event_id: i for i, e in enumerate(mine)}
        else:
            seq = {e.event_id: e.event_id for e in mine}
        entries = [e for e in mine if _matches(e, request["steps"][0]) and lo <= e.date_key <= hi]
        if not entries:
            continue
        results = [(_entry(e, mine, seq, request), e) for e in entries]
        (reached, taken), _ = min(results, key=lambda r: (-r[0][0], r[1].ts, r[1].event_id))
        out.append((reached, taken))
    return out


def funnel(events: list[Event], request: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """Per breakdown value (key ``None`` without a breakdown): ``step_k``, ``median_s_k``, ``p90_s_k``."""
    n = len(request["steps"])
    prop, attribution = request.get("breakdown"), request.get("attribution", "first_touch")
    groups: dict[Any, list[tuple[int, list[Event | None]]]] = defaultdict(list)
    for reached, taken in chosen(events, request):
        if prop is None:
            key = None
        else:
            k = 1 if attribution == "first_touch" else int(attribution[5:])
            at = taken[k - 1] if reached >= k else None
            key = None if at is None else at.properties.get(prop)
        groups[key].append((reached, taken))
    out: dict[Any, dict[str, Any]] = {}
    for key, rows in groups.items():
        row: dict[str, Any] = {f"step_{k}": sum(1 for r, _ in rows if r >= k) for k in range(1, n + 1)}
        for k in range(2, n + 1):
            secs = [
                (t[k - 1].ts - t[0].ts).total_seconds()  # type: ignore[union-attr]
                for r, t in rows
                if r >= k
            ]
            row[f"median_s_{k}"] = _quantile(secs, 0.5)
            row[f"p90_s_{k}"] = _quantile(secs, 0.9)
        out[key] = row
    return out


def trend_by_day(events: list[Event], request: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """Entry day (``date_key`` of the chosen entry) → (entered, converted)."""
    n = len(request["steps"])
    out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for reached, taken in chosen(events, request):
        day = taken[0].date_key  # type: ignore[union-attr]
        out[day][0] += 1
        out[day][1] += reached >= n
    return {k: (v[0], v[1]) for k, v in out.items()}


__all__ = ["Event", "chosen", "funnel", "trend_by_day"]
