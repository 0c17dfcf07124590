"""Event flows on hand-made events: sessions split by the gap (the exact boundary included), the
first anchor of a session, steps after a start event and before an end event, top-K folding into
``other``, excluded events, the top paths and the Sankey shape — equal on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from huiyuan.analytics import engine
from huiyuan.analytics import paths as pa_
from tests.analytics.backends import both
from tests.analytics.events_data import at, table, with_json

ROWS = [
    # p1: two sessions (40 minutes apart), each with an A.
    ("p1", "A", at(0), {}),
    ("p1", "B", at(5), {}),
    ("p1", "C", at(10), {}),
    ("p1", "A", at(50), {}),
    ("p1", "C", at(55), {}),
    # p2: the session's first A anchors it; the second A is a step.
    ("p2", "X", at(0), {}),
    ("p2", "A", at(10), {}),
    ("p2", "B", at(20), {}),
    ("p2", "A", at(25), {}),
    ("p2", "D", at(30), {}),
    # p3: B exactly 30 minutes after A (same session), C 31 minutes after B (a new one).
    ("p3", "A", at(0), {}),
    ("p3", "B", at(30), {}),
    ("p3", "C", at(61), {}),
    # p4: never does A.
    ("p4", "B", at(0), {}),
    ("p4", "C", at(5), {}),
    # p5: a page view between A and B.
    ("p5", "A", at(0), {}),
    ("p5", "page_view", at(3), {}),
    ("p5", "B", at(6), {}),
    # p6: A alone, from an ad.
    ("p6", "A", at(0), {"channel": "ads"}),
]


@pytest.fixture(scope="module")
def backends(pg_database: str) -> Iterator[dict[str, Any]]:
    with both({"fact_events": table(ROWS)}, pg_database) as tables:
        yield {name: with_json(t["fact_events"]) for name, t in tables.items()}


def _request(**kw: Any) -> pa_.PathsRequest:
    base: dict[str, Any] = {"start": "2026-06-01", "end": "2026-06-01", "steps": 2}
    if "end_event" not in kw:
        base["start_event"] = {"event": "A"}
    return pa_.PathsRequest.model_validate({**base, **kw})


def _run(backends: dict[str, Any], fn: Any, request: pa_.PathsRequest) -> list[dict[str, Any]]:
    results = {name: engine.records(fn(events, 1, request)) for name, events in backends.items()}
    assert results["duckdb"] == results["postgres"]
    return results["duckdb"]


def _flow(backends: dict[str, Any], request: pa_.PathsRequest) -> list[dict[str, Any]]:
    return _run(backends, pa_.flow, request)


def _nodes(backends: dict[str, Any], request: pa_.PathsRequest) -> list[tuple[int, str, int]]:
    return [(r["step"], r["source"], r["sessions"]) for r in _flow(backends, request) if r["kind"] == "node"]


def _links(backends: dict[str, Any], request: pa_.PathsRequest) -> list[tuple[int, str, str, int]]:
    rows = _flow(backends, request)
    return [(r["step"], r["source"], r["target"], r["sessions"]) for r in rows if r["kind"] == "link"]


def _summary(backends: dict[str, Any], request: pa_.PathsRequest) -> tuple[int, int]:
    chart = pa_.sankey(_flow(backends, request))
    return chart["sessions"], chart["people"]


def test_steps_after_a_start_event(backends: dict[str, Any]) -> None:
    request = _request(exclude_events=["page_view"])
    # Sessions with an A: p1 (A B C), p1 again (A C), p2 (A B A), p3 (A B), p5 (A B), p6 (A).
    assert _summary(backends, request) == (6, 5)
    assert _nodes(backends, request) == [
        (0, "A", 6),
        (1, "B", 4),
        (1, "C", 1),
        (2, "A", 1),
        (2, "C", 1),
    ]
    assert _links(backends, request) == [
        (0, "A", "B", 4),
        (0, "A", "C", 1),
        (1, "B", "A", 1),
        (1, "B", "C", 1),
    ]
    top = pa_.path_list(_run(backends, pa_.top_paths, request), request)
    assert top == [
        {"events": ["A", "B"], "sessions": 2},
        {"events": ["A"], "sessions": 1},
        {"events": ["A", "B", "A"], "sessions": 1},
        {"events": ["A", "B", "C"], "sessions": 1},
        {"events": ["A", "C"], "sessions": 1},
    ]


def test_top_k_folds_the_rest_into_other(backends: dict[str, Any]) -> None:
    request = _request(exclude_events=["page_view"], top_k=1)
    # Step 2 ties A and C at one session each: A wins by name.
    assert _nodes(backends, request) == [
        (0, "A", 6),
        (1, "B", 4),
        (1, "other", 1),
        (2, "A", 1),
        (2, "other", 1),
    ]
    assert _links(backends, request) == [
        (0, "A", "B", 4),
        (0, "A", "other", 1),
        (1, "B", "A", 1),
        (1, "B", "other", 1),
    ]
    chart = pa_.sankey(_flow(backends, request))
    # p1's two sessions count twice at A but p1 once.
    assert chart["nodes"][0] == {"name": "step0:A", "step": 0, "event": "A", "value": 6, "people": 5}
    assert chart["nodes"][1] == {"name": "step1:B", "step": 1, "event": "B", "value": 4, "people": 4}
    assert chart["links"][1] == {"source": "step0:A", "target": "step1:other", "value": 1, "people": 1}
    names = {n["name"] for n in chart["nodes"]}
    assert all(link["source"] in names and link["target"] in names for link in chart["links"])
    # Every session at step k + 1 came over a link from step k.
    for step in (1, 2):
        into = sum(link["value"] for link in chart["links"] if link["target"].startswith(f"step{step}:"))
        assert into == sum(n["value"] for n in chart["nodes"] if n["step"] == step)


def test_steps_before_an_end_event(backends: dict[str, Any]) -> None:
    request = _request(end_event={"event": "C"}, exclude_events=["page_view"])
    # Sessions with a C: p1 (A B C), p1 again (A C), p3's second session (C), p4 (B C).
    assert _summary(backends, request) == (4, 3)
    assert _nodes(backends, request) == [(-2, "A", 1), (-1, "B", 2), (-1, "A", 1), (0, "C", 4)]
    assert _links(backends, request) == [(-2, "A", "B", 1), (-1, "B", "C", 2), (-1, "A", "C", 1)]
    top = pa_.path_list(_run(backends, pa_.top_paths, request), request)
    # One session each; ties in order of the steps left to right, a missing step first.
    assert [p["events"] for p in top] == [["C"], ["A", "C"], ["B", "C"], ["A", "B", "C"]]


def test_gap_exclusions_and_anchor_filters(backends: dict[str, Any]) -> None:
    # A 29-minute gap splits p3's A and B (30 minutes apart): p3's path is A alone.
    tight = _nodes(backends, _request(session_gap_minutes=29, exclude_events=["page_view"]))
    assert (1, "B", 3) in tight
    # Without the exclusion p5's page view is step 1.
    assert (1, "page_view", 1) in _nodes(backends, _request())
    ads = _request(start_event={"event": "A", "filters": [{"property": "channel", "value": "ads"}]})
    assert _summary(backends, ads) == (1, 1)
    nowhere = _request().model_copy(update={"start_event": pa_.Step(event="Z")})
    assert _flow(backends, nowhere) == [] and _summary(backends, nowhere) == (0, 0)


def test_requests_are_validated() -> None:
    for example in pa_.PathsRequest.model_config["json_schema_extra"]["examples"]:  # type: ignore[index]
        pa_.PathsRequest.model_validate(example)  # the OpenAPI examples are valid requests
    with pytest.raises(ValidationError):
        pa_.PathsRequest.model_validate({"start": "2026-06-01", "end": "2026-06-01"})
    with pytest.raises(ValidationError):
        _request(end_event={"event": "C"}, start_event={"event": "A"})
    with pytest.raises(ValidationError):
        _request(exclude_events=["A"])
    with pytest.raises(ValidationError):
        _request(steps=11)
    with pytest.raises(ValidationError):
        _request(start="2026-06-02")
