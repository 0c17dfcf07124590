"""The HTTP spec's rules without HTTP: bodies (gzip, limits, a gzip bomb), timestamp correction, the
SQLite time encoding against SQLAlchemy's own, and where a message goes (stream, flagged, quarantine)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from huiyuan.events import spec
from huiyuan.events.plan import EMPTY_PLAN, CompiledPlan, compile_event
from huiyuan.kit.types import UTCDateTime

RECEIVED = datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def test_bodies_and_their_limits() -> None:
    body = {"batch": [{"type": "track"}], "writeKey": "k"}
    raw = orjson.dumps(body)
    assert spec.decode_body(raw) == (body, len(raw))
    assert spec.decode_body(gzip.compress(raw), "gzip") == (body, len(raw))
    with pytest.raises(spec.InvalidEncoding):
        spec.decode_body(raw, "gzip")
    with pytest.raises(spec.InvalidEncoding):
        spec.decode_body(raw, "br")
    with pytest.raises(spec.InvalidJson):
        spec.decode_body(b"{nope")
    with pytest.raises(spec.InvalidJson):
        spec.decode_body(b"[1, 2]")
    big = b'{"x": "' + b"a" * spec.MAX_BATCH_BYTES + b'"}'
    with pytest.raises(spec.BatchTooLarge):
        spec.decode_body(big)
    # 100 MB of zeros compress to ~100 KB; never inflated past the limit.
    bomb = gzip.compress(b"0" * 100_000_000)
    with pytest.raises(spec.BatchTooLarge):
        spec.decode_body(bomb, "gzip")


def test_message_size_limit() -> None:
    small = {"type": "track", "properties": {"x": "a" * 1000}}
    big = {"type": "track", "properties": {"x": "a" * spec.MAX_MESSAGE_BYTES}}
    assert len(spec.envelope({"batch": [small] * 40}, "batch", body_bytes=40_000).messages) == 40
    with pytest.raises(spec.MessageTooLarge) as caught:
        spec.envelope({"batch": [small, big]}, "batch", body_bytes=40_000)
    assert caught.value.extra["index"] == 1
    with pytest.raises(spec.TrackingError):
        spec.envelope({"batch": {"type": "track"}}, "batch", body_bytes=10)
    with pytest.raises(spec.TrackingError):
        spec.envelope({"batch": [1]}, "batch", body_bytes=10)


def test_timestamp_correction() -> None:
    # The device clock runs 1 h fast: it stamped the event at 13:00:00 and sent it at 13:00:05.
    ts = datetime(2026, 5, 1, 13, 0, 0, tzinfo=UTC)
    sent = ts + timedelta(seconds=5)
    assert spec.corrected_time(RECEIVED, sent, ts) == RECEIVED - timedelta(seconds=5)
    assert spec.corrected_time(RECEIVED, None, ts) == ts
    assert spec.corrected_time(RECEIVED, sent, None) == RECEIVED
    assert spec.parse_time("2026-05-01T20:00:00+08:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert spec.parse_time("2026-05-01T12:00:00.123Z") == datetime(2026, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    assert spec.parse_time("2026-05-01T12:00:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)  # naive = UTC


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 5, 1, 20, 0, 0, 123, tzinfo=spec.parse_time("2026-01-01T00:00:00+08:00").tzinfo),
        datetime(999, 1, 1, tzinfo=UTC),
    ],
)
def test_sqlite_times_are_what_sqlalchemy_writes(value: datetime) -> None:
    dialect = sqlite.dialect()
    impl = UTCDateTime().dialect_impl(dialect)
    processor = impl.bind_processor(dialect)
    assert processor is not None
    assert spec.sqlite_time(value) == processor(value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30)),
            st.integers(min_value=-14 * 60, max_value=14 * 60),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_sqlite_times_formatted_per_second_are_sqlite_time(values: list[tuple[datetime, int]]) -> None:
    # One encoder for many times (as for a request's messages): seconds that share their day, hour,
    # minute and second but not their month or year must not share the cached part.
    times = spec.SqliteTimes()
    for naive, minutes in values:
        value = naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
        for same_second in (value, value.replace(month=value.month % 12 + 1, day=min(value.day, 28))):
            assert times(same_second) == spec.sqlite_time(same_second)


def _libraries_time(value: datetime, offset_minutes: int, digits: int, zulu: bool) -> str:
    local = value.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}"
    if digits:
        text += "." + f"{local.microsecond:06d}"[:digits]
    if zulu and offset_minutes == 0:
        return text + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    return text + f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"


def _expected_times(raw: str, sent_at: str | None, dedup: bool) -> tuple[Any, ...] | None:
    """The slow, obvious way: parse, correct, format; None if the message is not kept."""
    try:
        original = spec.parse_time(raw)
        sent = spec.parse_time(sent_at)
        assert original is not None
        timestamp = spec.corrected_time(RECEIVED, sent, original)
        return (
            spec.epoch_ms(original) if dedup else 0,
            spec.sqlite_time(timestamp),
            spec.sqlite_time(original),
        )
    except (ValueError, OverflowError):
        return None


def _prepared_times(raw: str, sent_at: str | None, dedup: bool) -> tuple[Any, ...] | None:
    preparer = spec.Preparer(
        brand_id=1,
        source_id=2,
        plan=EMPTY_PLAN,
        dialect="sqlite",
        received_at=RECEIVED,
        dedup="message_id_and_timestamp" if dedup else "message_id",
    )
    message = {"type": "track", "userId": "u", "event": "x", "messageId": "m", "timestamp": raw}
    out = preparer.add(spec.Envelope([message], sent_at=sent_at))
    if not out.events:
        return None
    row = dict(zip(spec.EVENT_COLUMNS, out.events[0], strict=True))
    return row["dedup_ms"], row["timestamp"], row["original_timestamp"]


_TIMES = {
    "value": st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)),
    "micro": st.integers(min_value=0, max_value=999_999),
    "offset": st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    "digits": st.sampled_from([0, 3, 6]),
    "zulu": st.booleans(),
    "shift": st.integers(min_value=-(10**12), max_value=10**12),  # µs between sentAt and receivedAt
    "dedup": st.booleans(),
}


def _same_times(raw: str, shift: int, dedup: bool) -> None:
    sent_at = (RECEIVED + timedelta(microseconds=shift)).isoformat()
    assert _prepared_times(raw, sent_at, dedup) == _expected_times(raw, sent_at, dedup)
    assert _prepared_times(raw, None, dedup) == _expected_times(raw, None, dedup)


@settings(max_examples=300, deadline=None)
@given(**_TIMES)
def test_the_libraries_times_read_without_datetime_are_the_slow_ways_times(
    value: datetime, micro: int, offset: int, digits: int, zulu: bool, shift: int, dedup: bool
) -> None:
    _same_times(_libraries_time(value.replace(microsecond=micro), offset, digits, zulu), shift, dedup)


@settings(max_examples=300, deadline=None)
@given(**_TIMES, at=st.integers(min_value=0, max_value=40), char=st.sampled_from("0:-+.TZ Xa9١"))
def test_the_shortcut_for_times_accepts_nothing_the_slow_way_refuses(
    value: datetime,
    micro: int,
    offset: int,
    digits: int,
    zulu: bool,
    shift: int,
    dedup: bool,
    at: int,
    char: str,
) -> None:
    raw = _libraries_time(value.replace(microsecond=micro), offset, digits, zulu)
    raw = raw[:at] + char + raw[at + 1 :] if at < len(raw) else raw + char  # one character replaced or added
    _same_times(raw, shift, dedup)


PLAN = CompiledPlan(
    events={
        ("track", "Order Paid"): compile_event(
            kind="track",
            name="Order Paid",
            version=1,
            status="active",
            allow_additional=True,
            properties=[{"name": "order_id", "type": "string", "required": True}],
        )
    }
)


def prepare(messages: list[dict[str, Any]], plan: CompiledPlan = PLAN, **env: Any) -> spec.Prepared:
    preparer = spec.Preparer(brand_id=1, source_id=2, plan=plan, dialect="sqlite", received_at=RECEIVED)
    return preparer.add(spec.Envelope(messages, **env))


def column(row: tuple[Any, ...], name: str) -> Any:
    return row[spec.EVENT_COLUMNS.index(name)]


def test_spec_breaks_go_to_the_quarantine_with_their_rule() -> None:
    broken = [
        {"type": "track", "event": "x"},  # nobody
        {"type": "track", "userId": "u"},  # no event
        {"type": "alias", "userId": "u"},  # no previousId
        {"type": "group", "userId": "u"},  # no groupId
        {"type": "wave", "userId": "u"},
        {"type": "track", "userId": "u", "event": "x", "timestamp": "soon"},
        {"type": "track", "userId": "u" * 201, "event": "x"},
        {"type": "track", "userId": ["u"], "event": "x"},
        {"type": "track", "userId": "u", "event": "x", "properties": [1]},
        {"type": "identify", "userId": "u", "context": {"externalIds": [{"id": "1"}]}},
    ]
    out = prepare(broken)
    assert out.events == [] and len(out.quarantined) == len(broken)
    fields = [
        orjson.loads(q[spec.QUARANTINE_COLUMNS.index("violations")])[0]["property"] for q in out.quarantined
    ]
    assert fields == [
        "userId",
        "event",
        "previousId",
        "groupId",
        "type",
        "timestamp",
        "userId",
        "userId",
        "properties",
        "context.externalIds",
    ]
    assert all(orjson.loads(q[-2])[0]["rule"] == "spec" for q in out.quarantined)


def test_rows_batch_context_and_the_write_key_never_stored() -> None:
    out = prepare(
        [
            {
                "type": "identify",
                "userId": 42,
                "anonymousId": "a-1",
                "messageId": "m1",
                "writeKey": "secret",
                "context": {
                    "traits": {"name": "王芳"},
                    "externalIds": [{"id": "o-1", "type": "wechat_openid"}],
                },
                "timestamp": "2026-05-01T13:00:00Z",
                "channel": "server",
            },
            {
                "type": "page",
                "anonymousId": "a-1",
                "name": "首页",
                "category": "home",
                "messageId": "m" * 300,
            },
        ],
        sent_at="2026-05-01T13:00:05Z",
        context={"ip": "10.0.0.1"},
    )
    identify, page = out.events
    assert column(identify, "user_id") == "42"
    assert orjson.loads(column(identify, "traits")) == {"name": "王芳"}  # RudderStack's place for traits
    assert orjson.loads(column(identify, "context"))["ip"] == "10.0.0.1"
    assert orjson.loads(column(identify, "external_ids")) == [{"id": "o-1", "type": "wechat_openid"}]
    assert orjson.loads(column(identify, "extra")) == {"channel": "server"}
    assert column(identify, "timestamp") == "2026-05-01 11:59:55.500000"
    assert column(identify, "original_timestamp") == "2026-05-01 13:00:00.000000"
    assert column(identify, "sent_at") == "2026-05-01 13:00:05.000000"
    assert not any("secret" in str(v) for v in identify)
    assert column(page, "event") == "首页" and orjson.loads(column(page, "extra")) == {"category": "home"}
    assert column(page, "message_id").startswith("sha256:") and len(column(page, "message_id")) == 71
    assert column(page, "timestamp") == column(page, "received_at") == "2026-05-01 12:00:00.500000"


def test_plan_outcomes_flag_quarantine_and_unplanned() -> None:
    messages = [
        {"type": "track", "userId": "u", "event": "Order Paid", "properties": {"order_id": "1"}},
        {"type": "track", "userId": "u", "event": "Order Paid", "properties": {}},
        {"type": "track", "userId": "u", "event": "Wishlist Added", "properties": {"sku": "A"}},
        {"type": "track", "userId": "u", "event": "Wishlist Added", "properties": {"sku": "B"}},
    ]
    flagged = prepare([dict(m) for m in messages])
    assert len(flagged.events) == 4 and flagged.flagged == 1 and not flagged.quarantined
    assert orjson.loads(column(flagged.events[1], "violations"))[0]["rule"] == "required"
    assert flagged.unplanned == {("track", "Wishlist Added"): [2, {"sku": "A"}]}
    day = RECEIVED.date()
    assert flagged.stats == {(day, "track", "Order Paid", "order_id", "required"): [1, 0]}

    strict = CompiledPlan(events=PLAN.events, violation_mode="quarantine", unplanned_policy="violation")
    out = prepare([dict(m) for m in messages], strict)
    assert len(out.events) == 1 and len(out.quarantined) == 3 and out.flagged == 0
    assert out.stats[(day, "track", "Wishlist Added", "", "unplanned-event")] == [2, 2]
