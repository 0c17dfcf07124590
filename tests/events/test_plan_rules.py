"""The tracking plan's checks, pure: every rule, enum edge cases, inference from a sample, and a property
test that an event built to match its definition never breaks it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from huiyuan.events.plan import PROPERTY_TYPES, check, compile_event, infer_properties, json_type


def _event(properties: list[dict[str, Any]], *, status: str = "active", allow_additional: bool = True):  # type: ignore[no-untyped-def]
    return compile_event(
        kind="track",
        name="Product Viewed",
        version=2,
        status=status,
        allow_additional=allow_additional,
        properties=properties,
    )


PRODUCT = [
    {"name": "sku", "type": "string", "required": True},
    {"name": "price", "type": "number", "required": True},
    {"name": "quantity", "type": "integer"},
    {"name": "in_stock", "type": "boolean"},
    {"name": "seen_at", "type": "datetime"},
    {"name": "tags", "type": "array"},
    {"name": "dims", "type": "object"},
    {"name": "currency", "type": "string", "enum": ["CNY", "HKD"]},
    {"name": "level", "type": "integer", "enum": [1, 2, 3]},
    {"name": "member", "type": "boolean", "enum": [True]},
]


def rules(violations: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(v["property"], v["rule"]) for v in violations}


def test_a_conforming_event_has_no_violations() -> None:
    props = {
        "sku": "LX-1",
        "price": 99,
        "quantity": 2,
        "in_stock": False,
        "seen_at": "2026-05-01T10:00:00+08:00",
        "tags": ["新品"],
        "dims": {"w": 1},
        "currency": "CNY",
        "level": 3,
        "member": True,
        "extra": "allowed",
    }
    assert check(_event(PRODUCT), props) == []


def test_every_rule() -> None:
    props = {
        "price": "99",  # type
        "quantity": 1.5,  # integer
        "in_stock": 1,  # boolean
        "seen_at": "yesterday",  # datetime
        "tags": "a,b",
        "dims": [1],
        "currency": "USD",  # enum
        "level": True,  # a boolean is not the integer 1
        "member": 1,  # type, not enum
    }
    found = rules(check(_event(PRODUCT), props))
    assert found == {
        ("sku", "required"),
        ("price", "type"),
        ("quantity", "type"),
        ("in_stock", "type"),
        ("seen_at", "type"),
        ("tags", "type"),
        ("dims", "type"),
        ("currency", "enum"),
        ("level", "type"),
        ("member", "type"),
    }
    message = next(v for v in check(_event(PRODUCT), props) if v["property"] == "price")["message"]
    assert message == "expected number, got string"


def test_null_counts_as_missing_and_integral_floats_are_integers() -> None:
    assert rules(check(_event(PRODUCT), {"sku": None, "price": 1, "quantity": 2.0})) == {("sku", "required")}


def test_unplanned_properties_and_deprecation() -> None:
    closed = _event(PRODUCT[:2], allow_additional=False)
    assert rules(check(closed, {"sku": "a", "price": 1, "colour": "red"})) == {
        ("colour", "unplanned-property")
    }
    deprecated = _event(PRODUCT[:2], status="deprecated")
    assert rules(check(deprecated, {"sku": "a", "price": 1})) == {("", "deprecated")}


def test_inferred_definition_accepts_its_sample() -> None:
    sample = {
        "sku": "A",
        "price": 9.9,
        "n": 2,
        "ok": True,
        "at": "2026-05-01T10:00:00Z",
        "l": [],
        "o": {},
        "z": None,
    }
    specs = infer_properties(sample)
    assert {s["name"]: s["type"] for s in specs} == {
        "sku": "string",
        "price": "number",
        "n": "integer",
        "ok": "boolean",
        "at": "datetime",
        "l": "array",
        "o": "object",
        "z": "string",
    }
    assert not any(s["required"] for s in specs)
    assert check(_event(specs, allow_additional=False), sample) == []


VALUES: dict[str, Any] = {
    "string": st.text(max_size=20),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
    "integer": st.integers(),
    "boolean": st.booleans(),
    "datetime": st.datetimes().map(lambda d: d.isoformat()),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
}


@given(
    st.lists(
        st.tuples(st.sampled_from(PROPERTY_TYPES), st.booleans(), st.booleans()), min_size=1, max_size=8
    ).flatmap(
        lambda specs: st.tuples(
            st.just(specs), st.tuples(*[VALUES[t] for t, _, _ in specs]), st.lists(st.booleans(), min_size=8)
        )
    )
)
def test_generated_conforming_events_pass(data: Any) -> None:
    specs, values, present = data
    properties = []
    event: dict[str, Any] = {}
    for i, ((kind, required, with_enum), value) in enumerate(zip(specs, values, strict=True)):
        spec: dict[str, Any] = {"name": f"p{i}", "type": kind, "required": required}
        if with_enum and kind in ("string", "number", "integer", "boolean"):
            spec["enum"] = [value]
        properties.append(spec)
        if required or present[i]:
            event[f"p{i}"] = value
    assert check(_event(properties, allow_additional=False), event) == []
    assert all(json_type(v) != "null" for v in event.values())
