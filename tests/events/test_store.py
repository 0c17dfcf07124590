"""The hot path's shortcuts against the slow, obvious way: the store's multi-row inserts (chunk sizes,
duplicates inside a request and across requests) on both databases, the plan's fast conformance
check against the full check, timestamps out of range, and the tracking API's parse hand-over
(in a server of one process or of several)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from huiyuan.events import collect_api, repository, spec, store
from huiyuan.events.models import Event, QuarantinedEvent
from huiyuan.events.plan import EMPTY_PLAN, check, compile_event
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError
from huiyuan.kit.scope import Scope
from tests.conftest import World
from tests.events.conftest import basic, make_source

RECEIVED = datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def _prepared(db: Database, brand_id: int, ids: list[str]) -> spec.Prepared:
    messages = [
        {"type": "track", "userId": "u", "event": "x", "messageId": m, "properties": {"名": "值"}}
        for m in ids
    ]
    preparer = spec.Preparer(
        brand_id=brand_id,
        source_id=7,
        plan=EMPTY_PLAN,
        dialect=db.engine.dialect.name,
        received_at=RECEIVED,
    )
    return preparer.add(spec.Envelope(messages))


def _write(db: Database, brand_id: int, prepared: spec.Prepared) -> tuple[int, int]:
    with collect_api.write_when_needed(db, Scope(brand_id=brand_id)) as s:
        return store.write(s, brand_id=brand_id, prepared=prepared, at=RECEIVED)


def test_multi_row_inserts_count_new_rows_and_skip_duplicates(db: Database, world: World) -> None:
    brand = world.brands[0].id
    # 341 = 256 + 64 + 16 + 4 + 1: one statement of each size; repeats inside and across requests.
    first = [f"m{i}" for i in range(341)]
    assert _write(db, brand, _prepared(db, brand, first)) == (341, 0)
    again = [f"m{i}" for i in range(300, 341)] + [f"n{i}" for i in range(259)] + ["n0", "n1"]
    assert _write(db, brand, _prepared(db, brand, again)) == (259, 0)
    assert _write(db, brand, _prepared(db, brand, [])) == (0, 0)
    with db.unit_of_work(write=False) as s:
        stored = list(s.execute(select(Event.message_id, Event.properties).order_by(Event.id)))
    assert [m for m, _ in stored] == first + [f"n{i}" for i in range(259)]
    assert all(p == {"名": "值"} for _, p in stored)
    # The live chart's counter saw the new events only, under the minute they were received.
    other = world.brands[1].id
    assert _write(db, other, _prepared(db, other, ["o0", "o1"])) == (2, 0)
    minute = int(RECEIVED.timestamp()) // 60
    for brand_id, new in ((brand, 341 + 259), (other, 2)):
        with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
            assert repository.events_per_minute(s, since=RECEIVED.replace(second=0)) == [(minute, new)]
            assert repository.events_per_minute(s, since=RECEIVED.replace(minute=1)) == []


def test_quarantined_rows_go_in_the_same_way(db: Database, world: World) -> None:
    brand = world.brands[0].id
    # No userId and no anonymousId: every message breaks the spec.
    # 40 + 5 repeats: one row a statement on PostgreSQL; 300 + 5: the COPY path (store.COPY_FROM).
    assert 45 < store.COPY_FROM <= 305
    for count in (40, 300):
        messages = [{"type": "track", "event": "x", "messageId": f"q{count}-{i}"} for i in range(count)]
        preparer = spec.Preparer(
            brand_id=brand, source_id=7, plan=EMPTY_PLAN, dialect=db.engine.dialect.name, received_at=RECEIVED
        )
        prepared = preparer.add(spec.Envelope(messages + messages[:5]))
        assert _write(db, brand, prepared) == (0, count)
        with db.unit_of_work(write=False) as s:
            rows = list(
                s.execute(
                    select(QuarantinedEvent.message_id, QuarantinedEvent.message)
                    .where(QuarantinedEvent.message_id.startswith(f"q{count}-"))
                    .order_by(QuarantinedEvent.id)
                )
            )
        assert [m for m, _ in rows] == [f"q{count}-{i}" for i in range(count)]
        assert rows[0][1] == messages[0]


def test_chunks_cover_every_count() -> None:
    for n in range(0, 700):
        sizes = []
        left = n
        for size in store.CHUNKS:
            sizes += [size] * (left // size)
            left %= size
        assert sum(sizes) == n and len(set(sizes)) <= len(store.CHUNKS)


VALUES: list[Any] = [
    None,
    "a",
    "CNY",
    "",
    0,
    1,
    2.0,
    2.5,
    True,
    False,
    [],
    [1],
    {},
    {"k": 1},
    "2026-05-01T10:00:00Z",
]
TYPES = ["string", "number", "integer", "boolean", "datetime", "array", "object"]


@pytest.mark.parametrize("allow_additional", [True, False])
@pytest.mark.parametrize("status", ["active", "deprecated"])
def test_the_fast_check_never_passes_what_the_full_check_flags(allow_additional: bool, status: str) -> None:
    for kind, required, enum in itertools.product(TYPES, [True, False], [None, ["CNY", 1, True]]):
        spec_ = {"name": "p", "type": kind, "required": required, **({"enum": enum} if enum else {})}
        event = compile_event(
            kind="track",
            name="E",
            version=1,
            status=status,
            allow_additional=allow_additional,
            properties=[spec_],
        )
        for value, extra in itertools.product(VALUES, [False, True]):
            properties = {} if value is None else {"p": value}
            if extra:
                properties["other"] = 1
            violations = check(event, properties)
            if event.conforms(properties):
                assert violations == [], (spec_, properties)


def test_a_timestamp_out_of_range_is_a_spec_break_not_an_error() -> None:
    preparer = spec.Preparer(brand_id=1, source_id=2, plan=EMPTY_PLAN, dialect="sqlite", received_at=RECEIVED)
    out = preparer.add(
        spec.Envelope(
            [
                {"type": "track", "userId": "u", "event": "x", "timestamp": "9999-12-31T23:59:59Z"},
                {"type": "track", "userId": "u", "event": "x", "timestamp": "0001-01-01T00:00:00+08:00"},
            ],
            sent_at="2026-05-01T11:00:00Z",
        )
    )
    assert out.events == [] and len(out.quarantined) == 2


def test_a_refused_request_hands_the_parsing_over(db: Database) -> None:
    for raw, authorization in [(b"nope", None), (b'{"batch": []}', None), (b'{"batch": []}', "Basic eDo=")]:
        with pytest.raises(AppError):
            collect_api.collect(
                db,
                raw=raw,
                kind="batch",
                authorization=authorization,
                content_encoding=None,
                received_at=RECEIVED,
            )
        assert not collect_api._parsing.locked()


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_request_parses_beside_a_write_only_in_a_server_of_one_process(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch, overlap: bool
) -> None:
    _sid, key = make_source(db, world.brands[0].id, kind="server")
    seen: list[bool] = []
    write = store.write

    def observed(*args: Any, **kwargs: Any) -> tuple[int, int]:
        out = write(*args, **kwargs)  # its first statement has begun the write transaction
        seen.append(collect_api._parsing.locked())
        return out

    monkeypatch.setattr(store, "write", observed)
    body = orjson.dumps({"batch": [{"type": "track", "anonymousId": "a", "event": "E", "messageId": "m1"}]})
    result = collect_api.collect(
        db,
        raw=body,
        kind="batch",
        authorization=basic(key)["Authorization"],
        content_encoding=None,
        received_at=RECEIVED,
        overlap=overlap,
    )
    assert result.stored == 1
    # Handed over when the write began (one process), or held until the request is done (several).
    assert seen == [not overlap]
    assert not collect_api._parsing.locked()


@pytest.mark.parametrize("workers", [1, 2])
def test_the_api_overlaps_requests_only_in_a_server_of_one_process(
    db: Database, world: World, app: Any, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    from fastapi.testclient import TestClient

    _sid, key = make_source(db, world.brands[0].id, kind="server")
    asked: list[bool] = []
    collect = collect_api.collect

    def observed(*args: Any, overlap: bool, **kwargs: Any) -> Any:
        asked.append(overlap)
        return collect(*args, overlap=overlap, **kwargs)

    monkeypatch.setattr(collect_api, "collect", observed)
    monkeypatch.setattr(app.state.settings, "serve_workers", workers)
    with TestClient(app) as client:
        r = client.post("/v1/track", json={"anonymousId": "a", "event": "E"}, headers=basic(key))
    assert r.status_code == 200, r.text
    assert asked == [workers == 1]
