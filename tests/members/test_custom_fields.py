from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.errors import Conflict
from huiyuan.kit.scope import system_for_brand
from huiyuan.members import service
from huiyuan.members.custom_fields import InvalidValue, canonical_decimal, coerce_value
from huiyuan.members.models import CustomFieldDefinition, CustomFieldUniqueValue
from huiyuan.members.schemas import MemberUpdate
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll, make_key

URL = "/api/v1/custom-fields"


def define(client: Any, headers: dict[str, str], key: str, type_: str, **extra: Any) -> dict[str, Any]:
    body = {"key": key, "labels": {"zh": key, "en": key}, "type": type_, **extra}
    r = client.post(URL, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def errors_of(r: Any) -> dict[str, str]:
    return {e["field"]: e["code"] for e in r.json().get("errors", [])}


def try_enroll(client: Any, headers: dict[str, str], custom: dict[str, Any]) -> Any:
    return client.post("/api/v1/members", json={"enroll_channel": "store", "custom": custom}, headers=headers)


# --- definitions ---------------------------------------------------------------------------------


def test_define_change_retire_reactivate_with_audit_and_events(client, world: World) -> None:
    h = world.brands[0].headers
    out = define(client, h, "shoe_size", "integer", min=30, max=50, position=2)
    assert out["min"] == 30 and out["max"] == 50 and out["status"] == "active"
    r = client.patch(f"{URL}/shoe_size", json={"labels": {"zh": "鞋码"}, "position": 1}, headers=h)
    assert r.status_code == 200 and r.json()["labels"] == {"zh": "鞋码", "en": "shoe_size"}
    assert client.post(f"{URL}/shoe_size/retire", headers=h).json()["status"] == "retired"
    assert client.post(f"{URL}/shoe_size/retire", headers=h).status_code == 200  # idempotent
    assert client.get(URL, headers=h).json()["items"] == []
    listed = client.get(URL, params={"include_retired": "true"}, headers=h).json()["items"]
    assert [f["key"] for f in listed] == ["shoe_size"]
    assert client.post(f"{URL}/shoe_size/reactivate", headers=h).json()["status"] == "active"
    with world.db.unit_of_work() as s:
        actions = [
            a.action
            for a in s.scalars(
                select(AuditEntry).where(AuditEntry.entity_type == "custom_field").order_by(AuditEntry.id)
            )
        ]
        events = [
            (e.type, e.payload["change"]) for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        ]
    assert actions == [
        "custom_field.defined",
        "custom_field.updated",
        "custom_field.retired",
        "custom_field.reactivated",
    ]
    assert events == [
        ("custom_field.defined", "created"),
        ("custom_field.defined", "updated"),
        ("custom_field.retired", "retired"),
        ("custom_field.defined", "reactivated"),
    ]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"key": "Bad-Key", "type": "string"}, "key", "string_pattern_mismatch"),
        ({"key": "skin", "type": "enum"}, "options", "required"),
        ({"key": "skin", "type": "enum", "options": ["a", "a"]}, "options", "duplicate-option"),
        ({"key": "tags", "type": "multi_enum", "options": ["a,b"]}, "options", "invalid"),
        ({"key": "n", "type": "integer", "options": ["a"]}, "options", "not-applicable"),
        ({"key": "code", "type": "string", "pattern": "([a-z"}, "pattern", "invalid-pattern"),
        ({"key": "n", "type": "integer", "pattern": "\\d+"}, "pattern", "not-applicable"),
        ({"key": "n", "type": "integer", "min": 10, "max": 5}, "max", "out-of-range"),
        ({"key": "n", "type": "integer", "min": "ten"}, "min", "invalid-type"),
        ({"key": "d", "type": "date", "min": "2026-13-01"}, "min", "invalid-type"),
        ({"key": "b", "type": "boolean", "min": 1}, "min", "not-applicable"),
        ({"key": "s", "type": "string", "max": 100000}, "max", "out-of-range"),
        ({"key": "b", "type": "boolean", "unique": True}, "unique", "not-applicable"),
        ({"key": "n", "type": "integer", "max": 5, "default": 9}, "default", "out-of-range"),
        ({"key": "n", "type": "integer", "unique": True, "default": 1}, "default", "not-applicable"),
        ({"key": "skin", "type": "enum", "options": ["a"], "default": "b"}, "default", "not-an-option"),
    ],
)
def test_definition_validation(client, world: World, body: dict[str, Any], field: str, code: str) -> None:
    h = world.brands[0].headers
    r = client.post(URL, json={"labels": {"zh": "x", "en": "x"}, **body}, headers=h)
    assert r.status_code == 422, r.text
    assert errors_of(r).get(field) == code, r.text


def test_key_unique_per_brand_type_fixed_options_only_grow(client, world: World) -> None:
    a, b = world.brands
    first = define(client, a.headers, "skin", "enum", options=["dry", "oily"])
    # the same definition again is the first result; a different one under the same key is a 409
    again = client.post(
        URL,
        json={
            "key": "skin",
            "labels": {"zh": "skin", "en": "skin"},
            "type": "enum",
            "options": ["dry", "oily"],
        },
        headers=a.headers,
    )
    assert again.status_code == 201 and again.json()["created_at"] == first["created_at"]
    r = client.post(
        URL, json={"key": "skin", "labels": {"zh": "x", "en": "x"}, "type": "string"}, headers=a.headers
    )
    assert r.status_code == 409 and errors_of(r) == {"key": "taken"}
    define(client, b.headers, "skin", "string")  # another brand may use the key
    r = client.patch(f"{URL}/skin", json={"type": "string"}, headers=a.headers)
    assert r.status_code == 422 and errors_of(r) == {"type": "immutable"}
    r = client.patch(f"{URL}/skin", json={"options": ["dry"]}, headers=a.headers)
    assert r.status_code == 422 and errors_of(r) == {"options": "option-removed"}
    r = client.patch(f"{URL}/skin", json={"options": ["oily", "dry", "combination"]}, headers=a.headers)
    assert r.json()["options"] == ["dry", "oily", "combination"]
    r = client.patch(f"{URL}/skin", json={"required": True, "default": "nope"}, headers=a.headers)
    assert r.status_code == 422 and errors_of(r) == {"default": "not-an-option"}
    r = client.patch(f"{URL}/skin", json={"required": True, "default": "oily"}, headers=a.headers)
    assert r.json()["required"] is True and r.json()["default"] == "oily"
    assert client.patch(f"{URL}/nope", json={"position": 1}, headers=a.headers).status_code == 404


def test_permissions(client, world: World) -> None:
    a = world.brands[0]
    reader = {"Authorization": "Bearer " + make_key(world.db, a.id, ["members:read"])}
    assert client.get(URL, headers=reader).status_code == 200
    r = client.post(
        URL, json={"key": "x", "labels": {"zh": "x", "en": "x"}, "type": "string"}, headers=reader
    )
    assert r.status_code == 403
    nobody = {"Authorization": "Bearer " + make_key(world.db, a.id, ["orders:read"])}
    assert client.get(URL, headers=nobody).status_code == 403
    assert client.get(URL, headers=world.platform_headers).json()["code"] == "brand-required"


def test_tenancy_definitions_are_per_brand(client, world: World) -> None:
    a, b = world.brands
    define(client, a.headers, "vip_code", "string")
    assert client.get(URL, headers=b.headers).json()["items"] == []
    assert client.get(f"{URL}/vip_code", headers=b.headers).status_code == 404
    assert client.post(f"{URL}/vip_code/retire", headers=b.headers).status_code == 404
    r = try_enroll(client, b.headers, {"vip_code": "x"})
    assert r.status_code == 422 and errors_of(r) == {"custom.vip_code": "unknown-field"}
    h = {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}
    assert [f["key"] for f in client.get(URL, headers=h).json()["items"]] == ["vip_code"]


# --- values --------------------------------------------------------------------------------------

TYPE_CASES: list[tuple[str, dict[str, Any], list[tuple[Any, Any]], list[tuple[Any, str]]]] = [
    (
        "string",
        {"min": 2, "max": 5, "pattern": "[A-Z]+"},
        [("ABC", "ABC")],
        [("A", "too-short"), ("ABCDEF", "too-long"), ("abc", "pattern-mismatch"), (12, "invalid-type")],
    ),
    ("text", {}, [("长文本" * 10, "长文本" * 10)], [("x" * 10_001, "too-long"), (["x"], "invalid-type")]),
    (
        "integer",
        {"min": -5, "max": 100},
        [(42, 42), ("7", 7), (-5, -5), (3.0, 3)],
        [(True, "invalid-type"), (1.5, "invalid-type"), ("x", "invalid-type"), (101, "out-of-range")],
    ),
    (
        "decimal",
        {"min": "0", "max": "999.99"},
        [("12.50", "12.5"), (3, "3"), (0.1, "0.1"), ("999.99", "999.99"), ("1E+2", "100")],
        [("abc", "invalid-type"), ("NaN", "invalid-type"), (False, "invalid-type"), ("1000", "out-of-range")],
    ),
    ("boolean", {}, [(True, True), ("false", False)], [(1, "invalid-type"), ("yes", "invalid-type")]),
    (
        "date",
        {"min": "2000-01-01"},
        [("2026-03-01", "2026-03-01")],
        [("2026-02-30", "invalid-type"), ("1999-12-31", "out-of-range"), (20260301, "invalid-type")],
    ),
    (
        "datetime",
        {"max": "2030-01-01T00:00:00Z"},
        [
            ("2026-03-01T08:30:00+08:00", "2026-03-01T00:30:00+00:00"),
            ("2026-03-01T00:00:00Z", "2026-03-01T00:00:00+00:00"),
        ],
        [
            ("2026-03-01T08:30:00", "invalid-type"),
            ("soon", "invalid-type"),
            ("2031-01-01T00:00:00Z", "out-of-range"),
        ],
    ),
    ("enum", {"options": ["s", "m", "l"]}, [("m", "m")], [("xl", "not-an-option"), (["m"], "invalid-type")]),
    (
        "multi_enum",
        {"options": ["tea", "coffee", "juice"]},
        [(["juice", "tea"], ["tea", "juice"]), ([], [])],
        [(["tea", "tea"], "duplicate-option"), (["beer"], "not-an-option"), ("tea", "invalid-type")],
    ),
]


@pytest.mark.parametrize(("type_", "extra", "good", "bad"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
def test_every_type_valid_and_invalid(client, world: World, type_, extra, good, bad) -> None:
    h = world.brands[0].headers
    define(client, h, "f", type_, **extra)
    for raw, stored in good:
        r = try_enroll(client, h, {"f": raw})
        assert r.status_code == 201, (raw, r.text)
        assert r.json()["custom"] == {"f": stored}
    for raw, code in bad:
        r = try_enroll(client, h, {"f": raw})
        assert r.status_code == 422, (raw, r.text)
        assert errors_of(r) == {"custom.f": code}, raw


def test_errors_collected_together_and_nothing_written(client, world: World) -> None:
    h = world.brands[0].headers
    define(client, h, "n", "integer")
    define(client, h, "b", "boolean")
    r = try_enroll(client, h, {"n": "x", "b": 3, "zzz": 1})
    assert r.status_code == 422
    assert errors_of(r) == {
        "custom.n": "invalid-type",
        "custom.b": "invalid-type",
        "custom.zzz": "unknown-field",
    }
    assert client.get("/api/v1/members", headers=h).json()["items"] == []


def test_required_and_default(client, world: World) -> None:
    h = world.brands[0].headers
    define(client, h, "tier_hint", "enum", options=["a", "b"], required=True, default="a")
    define(client, h, "nickname", "string", required=True)
    r = try_enroll(client, h, {})
    assert r.status_code == 422 and errors_of(r) == {"custom.nickname": "required"}
    r = try_enroll(client, h, {"nickname": ""})
    assert errors_of(r) == {"custom.nickname": "required"}
    m = try_enroll(client, h, {"nickname": "小王"}).json()
    assert m["custom"] == {"tier_hint": "a", "nickname": "小王"}
    r = client.patch(f"/api/v1/members/{m['id']}", json={"custom": {"nickname": None}}, headers=h)
    assert r.status_code == 422 and errors_of(r) == {"custom.nickname": "required"}
    define(client, h, "note", "text")
    r = client.patch(f"/api/v1/members/{m['id']}", json={"custom": {"note": "hi"}}, headers=h)
    assert r.json()["custom"]["note"] == "hi"
    r = client.patch(f"/api/v1/members/{m['id']}", json={"custom": {"note": None}}, headers=h)
    assert "note" not in r.json()["custom"] and r.json()["custom"]["nickname"] == "小王"


def test_unique_clash_and_freeing_a_value(client, world: World) -> None:
    a, b = world.brands
    define(client, a.headers, "staff_no", "string", unique=True)
    define(client, b.headers, "staff_no", "string", unique=True)
    m1 = try_enroll(client, a.headers, {"staff_no": "S-1"}).json()
    r = try_enroll(client, a.headers, {"staff_no": "S-1"})
    assert r.status_code == 409 and errors_of(r) == {"custom.staff_no": "not-unique"}
    assert try_enroll(client, b.headers, {"staff_no": "S-1"}).status_code == 201  # per brand
    m2 = try_enroll(client, a.headers, {"staff_no": "S-2"}).json()
    r = client.patch(f"/api/v1/members/{m2['id']}", json={"custom": {"staff_no": "S-1"}}, headers=a.headers)
    assert r.status_code == 409
    # m1 moves to another value: S-1 is free for m2
    r = client.patch(f"/api/v1/members/{m1['id']}", json={"custom": {"staff_no": "S-9"}}, headers=a.headers)
    assert r.status_code == 200
    r = client.patch(f"/api/v1/members/{m2['id']}", json={"custom": {"staff_no": "S-1"}}, headers=a.headers)
    assert r.status_code == 200, r.text
    # clearing a value frees it too
    client.patch(f"/api/v1/members/{m2['id']}", json={"custom": {"staff_no": None}}, headers=a.headers)
    assert try_enroll(client, a.headers, {"staff_no": "S-1"}).status_code == 201
    with world.db.unit_of_work() as s:
        rows = sorted(
            (r.value, r.member_id)
            for r in s.scalars(select(CustomFieldUniqueValue).where(CustomFieldUniqueValue.brand_id == a.id))
        )
    assert [v for v, _ in rows] == ["S-1", "S-9"]
    assert (("S-9", m1["id"]) in rows) and all(mid != m2["id"] for _, mid in rows)


def test_retired_field_is_read_only_but_keeps_values(client, world: World) -> None:
    h = world.brands[0].headers
    define(client, h, "legacy", "integer")
    m = try_enroll(client, h, {"legacy": 5}).json()
    client.post(f"{URL}/legacy/retire", headers=h)
    r = client.patch(f"/api/v1/members/{m['id']}", json={"custom": {"legacy": 6}}, headers=h)
    assert r.status_code == 422 and errors_of(r) == {"custom.legacy": "retired-field"}
    assert try_enroll(client, h, {"legacy": 1}).status_code == 422
    # sending back what is stored is harmless, and the value is kept and filterable
    r = client.patch(
        f"/api/v1/members/{m['id']}", json={"custom": {"legacy": 5}, "city": "苏州市"}, headers=h
    )
    assert r.status_code == 200 and r.json()["custom"] == {"legacy": 5}
    items = client.get("/api/v1/members", params={"custom.legacy": "5"}, headers=h).json()["items"]
    assert [i["id"] for i in items] == [m["id"]]
    client.post(f"{URL}/legacy/reactivate", headers=h)
    r = client.patch(f"/api/v1/members/{m['id']}", json={"custom": {"legacy": 6}}, headers=h)
    assert r.status_code == 200 and r.json()["custom"] == {"legacy": 6}


# --- filters -------------------------------------------------------------------------------------


def test_filters_on_both_databases(client, world: World) -> None:
    h = world.brands[0].headers
    define(client, h, "size", "integer")
    define(client, h, "spend", "decimal")
    define(client, h, "vegan", "boolean")
    define(client, h, "since", "date")
    define(client, h, "seen", "datetime")
    define(client, h, "color", "enum", options=["red", "blue"])
    define(client, h, "drinks", "multi_enum", options=["tea", "coffee", "奶茶"])
    define(client, h, "nick", "string")
    rows = [
        {
            "size": 38,
            "spend": "10.5",
            "vegan": True,
            "since": "2024-01-01",
            "seen": "2026-01-01T08:00:00+08:00",
            "color": "red",
            "drinks": ["tea"],
            "nick": "a",
        },
        {
            "size": 42,
            "spend": "200",
            "vegan": False,
            "since": "2025-06-30",
            "seen": "2026-01-01T01:00:00Z",
            "color": "blue",
            "drinks": ["tea", "coffee"],
            "nick": "b",
        },
        {
            "size": 45,
            "spend": "99.99",
            "vegan": False,
            "since": "2026-02-01",
            "seen": "2026-02-01T00:00:00Z",
            "color": "blue",
            "drinks": ["奶茶"],
            "nick": "c",
        },
        {"nick": "d"},
    ]
    ids = [try_enroll(client, h, r).json()["id"] for r in rows]

    def find(**params: str) -> list[int]:
        r = client.get("/api/v1/members", params={f"custom.{k}": v for k, v in params.items()}, headers=h)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert find(size="42") == [ids[1]]
    assert find(size__gte="42") == ids[1:3]
    assert find(size__gte="39", size__lte="44") == [ids[1]]
    assert find(spend="200.00") == [ids[1]]
    assert find(spend__gte="99.99") == ids[1:3]
    assert find(spend__lte="10.50") == [ids[0]]
    assert find(spend__gte="3000000000.5") == []
    assert find(size__lte="9999999999") == ids[:3]  # beyond 32 bits on PostgreSQL too
    assert find(vegan="true") == [ids[0]]
    assert find(vegan="false") == ids[1:3]
    assert find(since__gte="2025-01-01") == ids[1:3]
    assert find(since="2024-01-01") == [ids[0]]
    # 08:00+08:00 is 00:00Z: before 01:00Z
    assert find(seen__lte="2026-01-01T00:30:00Z") == [ids[0]]
    assert find(seen="2026-01-01T09:00:00+08:00") == [ids[1]]
    assert find(color="blue") == ids[1:3]
    assert find(drinks__has="tea") == ids[:2]
    assert find(drinks__has="奶茶") == [ids[2]]
    assert find(drinks="coffee,tea") == [ids[1]]
    assert find(drinks="tea") == [ids[0]]
    assert find(nick="d") == [ids[3]]
    define(client, h, "a__b", "integer")  # "__" inside a key is not an operator
    assert find(a__b="1") == [] and find(a__b__gte="1") == []


def test_filter_errors(client, world: World) -> None:
    h = world.brands[0].headers
    define(client, h, "size", "integer")
    define(client, h, "color", "enum", options=["red"])
    cases = {
        "custom.nope": ("x", "unknown-field"),
        "custom.size__has": ("1", "unsupported-operator"),
        "custom.color__gte": ("red", "unsupported-operator"),
        "custom.size": ("big", "invalid-type"),
        "custom.color": ("green", "not-an-option"),
    }
    for name, (value, code) in cases.items():
        r = client.get("/api/v1/members", params={name: value}, headers=h)
        assert r.status_code == 422 and errors_of(r) == {name: code}, name
    r = client.get("/api/v1/members", params={"custom.size": "1"}, headers=world.platform_headers)
    assert r.status_code == 422 and r.json()["code"] == "brand-required"
    ph = {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}
    assert client.get("/api/v1/members", params={"custom.size": "1"}, headers=ph).status_code == 200


# --- properties (no database) --------------------------------------------------------------------


def _defn(type_: str, **kw: Any) -> CustomFieldDefinition:
    return CustomFieldDefinition(
        key="f", label_zh="f", label_en="f", type=type_, options=kw.pop("options", []), **kw
    )


@settings(max_examples=200, deadline=None)
@given(lo=st.integers(-1000, 1000), span=st.integers(0, 1000), value=st.integers(-(2**70), 2**70))
def test_integer_range_property(lo: int, span: int, value: int) -> None:
    hi = lo + span
    defn = _defn("integer", min_value=str(lo), max_value=str(hi))
    inside = lo <= value <= hi
    try:
        assert coerce_value(defn, value) == value and inside
    except InvalidValue as exc:
        assert not inside and exc.code == "out-of-range"


@settings(max_examples=200, deadline=None)
@given(
    lo=st.decimals(min_value=-1000, max_value=1000, places=2),
    hi=st.decimals(min_value=-1000, max_value=1000, places=2),
    value=st.decimals(min_value=-5000, max_value=5000, places=3),
)
def test_decimal_range_and_canonical_form_property(lo: Decimal, hi: Decimal, value: Decimal) -> None:
    defn = _defn("decimal", min_value=canonical_decimal(lo), max_value=canonical_decimal(hi))
    inside = lo <= value <= hi
    try:
        stored = coerce_value(defn, str(value))
    except InvalidValue as exc:
        assert not inside and exc.code == "out-of-range"
        return
    assert inside and Decimal(stored) == value
    assert coerce_value(defn, stored) == stored  # canonical form is a fixed point
    assert "E" not in stored and (stored == "0" or not stored.endswith("0") or "." not in stored)


@settings(max_examples=200, deadline=None)
@given(
    options=st.lists(
        st.text(min_size=1, max_size=5).filter(lambda s: "," not in s), min_size=1, max_size=6, unique=True
    ),
    picked=st.lists(st.text(min_size=1, max_size=5), max_size=6),
)
def test_enum_and_multi_enum_property(options: list[str], picked: list[str]) -> None:
    enum, multi = _defn("enum", options=options), _defn("multi_enum", options=options)
    for p in picked:
        if p in options:
            assert coerce_value(enum, p) == p
        else:
            with pytest.raises(InvalidValue):
                coerce_value(enum, p)
    valid = all(p in options for p in picked) and len(set(picked)) == len(picked)
    try:
        stored = coerce_value(multi, picked)
    except InvalidValue:
        assert not valid
        return
    assert valid and sorted(stored, key=options.index) == stored and set(stored) == set(picked)


def test_concurrent_writers_of_one_unique_value(client, world: World, db) -> None:
    """The second writer cannot see the first's uncommitted row; the unique constraint (PostgreSQL)
    or the write lock (SQLite) still turns the race into a 409."""

    a = world.brands[0]
    define(client, a.headers, "staff_no", "string", unique=True)
    m1, m2 = enroll(client, a.headers)["id"], enroll(client, a.headers)["id"]
    actor = system_for_brand(a.id)
    outcome: list[BaseException | None] = []

    def second_writer() -> None:
        try:
            with db.unit_of_work(actor.scope) as s:
                service.update_member(
                    s, actor=actor, member_id=m2, data=MemberUpdate(custom={"staff_no": "X"})
                )
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with db.unit_of_work(actor.scope) as s:
        service.update_member(s, actor=actor, member_id=m1, data=MemberUpdate(custom={"staff_no": "X"}))
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.5)  # let the second writer reach its insert (PG) or its BEGIN IMMEDIATE (SQLite)
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    # PostgreSQL: the pre-check saw nothing, the constraint decided; SQLite: the writer waited its turn
    assert ("concurrently" in outcome[0].detail) is (not db.is_sqlite)
    with db.unit_of_work(None, write=False) as s:
        rows = s.scalars(select(CustomFieldUniqueValue)).all()
    assert [(r.value, r.member_id) for r in rows] == [("X", m1)]
