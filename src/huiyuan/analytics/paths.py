"""Event flows (paths) over the warehouse's ``fact_events``: what people do in the N steps after a
start event, or before an end event, inside one session — written once with Ibis, shaped for a
Sankey chart.

Semantics, per person (``person_key``), over the events of business days ``[start, end]``:

* **Sessions.** A person's events ordered by time, then event id; a gap of more than
  ``session_gap_minutes`` (default 30) since the previous event starts a new session. Sessions are
  cut at the period's bounds. Events named in ``exclude_events`` still keep a session alive but are
  not steps of it.
* **Anchor.** The first event of a session matching ``start_event`` (paths run forwards) or
  ``end_event`` (paths run backwards). A session without it does not count; one with it counts once.
* **Steps.** The anchor is step 0; forwards, step k is the k-th event after it (1 … N), backwards
  the k-th event before it (−1 … −N). A session that ends sooner has a shorter path.
* **Top K per step.** At each step the K events reached by the most sessions keep their name (ties:
  by name); the others are folded into ``other``. Nodes are ``step<k>:<event>`` with the sessions
  (and people) that reached them; links join step k to step k + 1 with the sessions that took them.
* **Top paths**: the most frequent complete sequences of event names (not folded), anchor included.

Written in Ibis with three awkward spots: sessionising needs the previous event (``lag``) and then
a running sum of the "new session" flags — two window passes, since a window may not contain
another; a session's path as one row cannot use an ordered string aggregation (its ordering
argument is not portable across backends), so each position is a conditional ``max`` over the
session's steps instead; and nodes and links, two shapes, come out of one query as a union with a
``kind`` column, because the sessionising they share is nearly all the cost and a second query
would pay it again.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.analytics.funnel import Step, _matches

OTHER = "other"


class PathsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "start_event": {"event": "App Opened"},
                    "steps": 4,
                    "session_gap_minutes": 30,
                    "top_k": 5,
                    "top_paths": 10,
                    "exclude_events": ["page_view"],
                },
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "end_event": {"event": "Order Completed"},
                    "steps": 3,
                },
            ]
        },
    )

    start: date
    end: date
    start_event: Step | None = Field(default=None, description="Paths after this event (or use end_event)")
    end_event: Step | None = Field(default=None, description="Paths before this event")
    steps: int = Field(default=5, ge=1, le=10, description="Steps after (before) the anchor")
    session_gap_minutes: int = Field(default=30, ge=1, le=24 * 60)
    top_k: int = Field(default=10, ge=1, le=50, description="Events kept per step; the rest are `other`")
    top_paths: int = Field(default=10, ge=0, le=100)
    exclude_events: list[str] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> PathsRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if (self.end - self.start).days > 366:
            raise ValueError("a period is at most a year")
        if (self.start_event is None) == (self.end_event is None):
            raise ValueError("give exactly one of start_event and end_event")
        if self.anchor.event in self.exclude_events:
            raise ValueError("the anchor event cannot be excluded")
        return self

    @property
    def anchor(self) -> Step:
        anchor = self.start_event or self.end_event
        assert anchor is not None
        return anchor

    @property
    def forwards(self) -> bool:
        return self.start_event is not None

    @property
    def offsets(self) -> list[int]:
        """The steps, left to right: 0 … N forwards, −N … 0 backwards."""
        return list(range(self.steps + 1)) if self.forwards else list(range(-self.steps, 1))


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def session_steps(events: ir.Table, brand_id: int, request: PathsRequest) -> ir.Table:
    """One row per step of an anchored session: ``person``, ``session``, ``step`` (the offset from
    the anchor) and ``event``."""
    e = events.filter(
        events.brand_id == brand_id,
        events.date_key >= _key(request.start),
        events.date_key <= _key(request.end),
    )
    # Narrow first: the windows below sort what they carry.
    e = e.select(
        person=e.person_key, ts=e.ts, event_id=e.event_id, event=e.event, hit=_matches(e, request.anchor)
    )
    # Only people with an anchor in the period can have an anchored session: the sorts below
    # then skip everyone else (a hash semi-join is far cheaper than sorting their events).
    anchored = e.filter(e.hit).select(a_person=e.person).distinct()
    e = e.semi_join(anchored, e.person == anchored.a_person)
    timeline = ibis.window(group_by=e.person, order_by=[e.ts, e.event_id])
    previous = e.ts.lag().over(timeline)
    gap = ibis.interval(minutes=request.session_gap_minutes)
    starts = previous.isnull() | (e.ts > previous + gap)
    # Flags as integers: PostgreSQL casts no boolean to bigint.
    kept = ~e.event.isin(request.exclude_events) if request.exclude_events else ibis.literal(True)
    e = e.mutate(_new=ibis.ifelse(starts, 1, 0).cast("int64"), _kept=ibis.ifelse(kept, 1, 0).cast("int64"))
    # Both running sums over the same window, so one sort: the session number, and the position
    # among the kept events (a session is a run of consecutive positions, the distance between
    # two of its steps the difference of theirs).
    running = ibis.window(group_by=e.person, order_by=[e.ts, e.event_id], rows=(None, 0))
    e = e.mutate(session=e._new.sum().over(running), seq=e._kept.sum().over(running))
    e = e.filter(e._kept == 1)
    # The session's first anchor, joined back on (person, session): a hash join of the few
    # anchored sessions costs less than a third sort of every event.
    hits = e.filter(e.hit)
    anchors = hits.group_by([hits.person, hits.session]).aggregate(anchor_seq=hits.seq.min())
    anchors = anchors.rename(a_person="person", a_session="session")
    lo, hi = (0, request.steps) if request.forwards else (-request.steps, 0)
    joined = e.join(
        anchors,
        [
            e.person == anchors.a_person,
            e.session == anchors.a_session,
            e.seq >= anchors.anchor_seq + lo,
            e.seq <= anchors.anchor_seq + hi,
        ],
    )
    return joined.select(
        joined.person, joined.session, step=(joined.seq - joined.anchor_seq).cast("int32"), event=joined.event
    )


def _folded(steps: ir.Table, top_k: int) -> ir.Table:
    """The steps with ``label``: the event's name when it is among the step's K most reached
    events (ties by name), else ``other``."""
    counted = steps.mutate(_n=steps.count().over(group_by=[steps.step, steps.event]))
    ranked = counted.mutate(
        _rank=ibis.dense_rank().over(group_by=counted.step, order_by=[ibis.desc(counted._n), counted.event])
    )
    return ranked.mutate(
        label=ibis.cases((ranked._rank < top_k, ranked.event), else_=ibis.literal(OTHER))
    ).drop("_n", "_rank")


def flow(events: ir.Table, brand_id: int, request: PathsRequest) -> ir.Table:
    """The Sankey's nodes and links in one query (sessionising is the cost, so it is done once):
    ``kind = "node"`` rows — per step and (folded) event ``source``, the ``sessions`` and ``people``
    that reached it — and ``kind = "link"`` rows — per step k and (folded) pair, those that went
    from ``source`` at step k to ``target`` at k + 1. Nodes first, by step, ``other`` last, the
    most sessions first."""
    f = _folded(session_steps(events, brand_id, request), request.top_k)
    nodes = f.group_by([f.step, f.label]).aggregate(sessions=f.count(), people=f.person.nunique())
    nodes = nodes.select(
        kind=ibis.literal("node"),
        step=nodes.step,
        source=nodes.label,
        target=ibis.null("string"),
        sessions=nodes.sessions,
        people=nodes.people,
    )
    nxt = f.select(n_person=f.person, n_session=f.session, n_step=f.step, target=f.label)
    pairs = f.join(nxt, [f.person == nxt.n_person, f.session == nxt.n_session, nxt.n_step == f.step + 1])
    links = pairs.group_by([pairs.step, pairs.label, pairs.target]).aggregate(
        sessions=pairs.count(), people=pairs.person.nunique()
    )
    links = links.select(
        kind=ibis.literal("link"),
        step=links.step,
        source=links.label,
        target=links.target,
        sessions=links.sessions,
        people=links.people,
    )
    out = nodes.union(links)
    return out.order_by(
        [
            ibis.desc(out.kind),
            out.step,
            out.source == OTHER,
            out.target.fill_null("") == OTHER,
            ibis.desc(out.sessions),
            out.source,
            out.target.fill_null(""),
        ]
    )


def top_paths(events: ir.Table, brand_id: int, request: PathsRequest) -> ir.Table:
    """The most frequent paths: columns ``p0 … pN`` (left to right, null where a session ran
    short) and ``sessions``."""
    s = session_steps(events, brand_id, request)
    positions = {f"p{i}": s.event.max(where=s.step == k) for i, k in enumerate(request.offsets)}
    wide = s.group_by([s.person, s.session]).aggregate(**positions)
    out = wide.group_by(list(positions)).aggregate(sessions=wide.count())
    ordered = out.order_by([ibis.desc(out.sessions), *[out[p].fill_null("") for p in positions]])
    return ordered.limit(request.top_paths)


def node_name(step: int, event: str) -> str:
    return f"step{step}:{event}"


def sankey(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``flow`` rows as a Sankey chart takes them (ECharts: ``series.data`` and ``series.links``),
    with the anchored ``sessions`` and their ``people`` (those of the step-0 node)."""
    nodes = [r for r in rows if r["kind"] == "node"]
    anchor = [r for r in nodes if r["step"] == 0]
    return {
        "sessions": sum(r["sessions"] for r in anchor),
        "people": sum(r["people"] for r in anchor),
        "nodes": [
            {
                "name": node_name(r["step"], r["source"]),
                "step": r["step"],
                "event": r["source"],
                "value": r["sessions"],
                "people": r["people"],
            }
            for r in nodes
        ],
        "links": [
            {
                "source": node_name(r["step"], r["source"]),
                "target": node_name(r["step"] + 1, r["target"]),
                "value": r["sessions"],
                "people": r["people"],
            }
            for r in rows
            if r["kind"] == "link"
        ],
    }


def path_list(rows: list[dict[str, Any]], request: PathsRequest) -> list[dict[str, Any]]:
    """Top-path rows as ``{"events": [...], "sessions": n}`` (the missing steps left out)."""
    width = len(request.offsets)
    return [
        {"events": [r[f"p{i}"] for i in range(width) if r[f"p{i}"] is not None], "sessions": r["sessions"]}
        for r in rows
    ]
