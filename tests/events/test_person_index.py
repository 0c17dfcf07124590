"""The person index (``event_people``): the job that fills it is idempotent and resumable, brands stay
apart, and a person's events read through it (index up to the cursor + the store above it) equal a
scan of the store — the profile timeline page by page, the newest events by id, the event times."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from huiyuan.events import repository, store
from huiyuan.events.jobs import INDEX_PEOPLE, MINUTES_KEPT
from huiyuan.events.models import Event, EventMinute, EventPeopleCursor, EventPerson
from huiyuan.jobs.service import enqueue
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Scope, system_for_brand
from huiyuan.profile.repository import Cursor, ProfileRepository
from tests.conftest import World

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
USERS = ("u1", "u2", "u3")
ANONYMOUS = ("a1", "a2", "a3")
_messages = count()


@dataclass(frozen=True)
class Spec:
    """One event as the tests write it: who sent it and when (minutes after T0; ties are wanted)."""

    user_id: str | None
    anonymous_id: str | None
    minute: int


def add_events(db: Database, brand_id: int, specs: Sequence[Spec]) -> list[int]:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        rows = [
            Event(
                brand_id=brand_id,
                source_id=1,
                message_id=f"m-{next(_messages)}",
                type="track",
                event="Product Viewed",
                user_id=spec.user_id,
                anonymous_id=spec.anonymous_id,
                timestamp=T0 + timedelta(minutes=spec.minute),
                received_at=T0,
            )
            for spec in specs
        ]
        s.add_all(rows)
        s.flush()
        return [e.id for e in rows]


def index(db: Database, brand_id: int, limit: int) -> int:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        return store.index_people(s, brand_id=brand_id, limit=limit, at=utcnow())


def index_rows(db: Database, brand_id: int) -> list[tuple[str, int]]:
    with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
        stmt = select(EventPerson.person_key, EventPerson.event_id).order_by(
            EventPerson.event_id, EventPerson.person_key
        )
        return [(k, i) for k, i in s.execute(stmt)]


def wipe(db: Database, brand_id: int) -> None:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        for model in (EventPerson, EventPeopleCursor, Event):
            s.execute(delete(model).where(model.brand_id == brand_id))


def scan(events: list[Event], user_ids: Sequence[str], anonymous_ids: Sequence[str]) -> list[Event]:
    """The profile's rule, applied to every event of the brand."""
    return [
        e for e in events if e.user_id in user_ids or (e.user_id is None and e.anonymous_id in anonymous_ids)
    ]


@pytest.fixture
def brand(world: World) -> Iterator[int]:
    yield world.brands[0].id


def test_the_job_indexes_each_event_under_its_key_once(world: World) -> None:
    a, b = world.brands[0].id, world.brands[1].id
    ids = add_events(
        world.db,
        a,
        [Spec("u1", "a1", 0), Spec(None, "a1", 1), Spec("u2", None, 2), Spec(None, "a2", 3)],
    )
    other = add_events(world.db, b, [Spec("u1", "a1", 0)])
    assert index(world.db, a, limit=3) == 3  # a chunk
    assert index(world.db, a, limit=3) == 1  # the rest
    assert index(world.db, a, limit=3) == 0  # nothing left
    # An event with both ids: under its user id, and under its anonymous id for the stream (``s:``).
    expected = [("s:a1", ids[0]), ("u:u1", ids[0]), ("a:a1", ids[1]), ("u:u2", ids[2]), ("a:a2", ids[3])]
    assert index_rows(world.db, a) == expected
    # Brand B is untouched until its own run; brand A's cursor says nothing about B.
    assert index_rows(world.db, b) == []
    with world.db.unit_of_work(Scope(brand_id=b), write=False) as s:
        assert repository.people_cursor(s) == 0
    assert index(world.db, b, limit=10) == 1
    assert index_rows(world.db, b) == [("s:a1", other[0]), ("u:u1", other[0])]
    assert index_rows(world.db, a) == expected


def test_a_chunk_run_again_adds_nothing_and_the_cursor_never_goes_back(world: World) -> None:
    a = world.brands[0].id
    ids = add_events(world.db, a, [Spec("u1", None, i) for i in range(5)])
    assert index(world.db, a, limit=10) == 5
    # As if a run crashed after writing rows but before its cursor committed: the cursor goes back,
    # the chunk runs again over rows already there.
    with world.db.unit_of_work(Scope(brand_id=a)) as s:
        s.execute(delete(EventPeopleCursor))
    assert index(world.db, a, limit=10) == 5
    assert [i for _k, i in index_rows(world.db, a)] == ids
    # A slower run of an older chunk cannot move the cursor backwards.
    with world.db.unit_of_work(Scope(brand_id=a)) as s:
        s.execute(delete(EventPerson).where(EventPerson.event_id > ids[1]))
        cursor = s.get(EventPeopleCursor, a)
        assert cursor is not None
        cursor.event_id = ids[1]
    assert index(world.db, a, limit=2) == 2
    with world.db.unit_of_work(Scope(brand_id=a)) as s:
        stale = s.get(EventPeopleCursor, a)
        assert stale is not None and stale.event_id == ids[3]
    assert index(world.db, a, limit=2) == 1
    with world.db.unit_of_work(Scope(brand_id=a), write=False) as s:
        assert repository.people_cursor(s) == ids[4]
        assert s.scalar(select(func.count()).select_from(EventPerson)) == 5


def test_the_scheduled_job_indexes_and_resumes_from_its_cursor(world: World) -> None:
    a = world.brands[0].id
    first = add_events(world.db, a, [Spec("u1", None, i) for i in range(3)])
    with world.db.unit_of_work() as s:
        enqueue(s, actor=system_for_brand(a), kind=INDEX_PEOPLE)  # the memory queue runs it at once
    assert [i for _k, i in index_rows(world.db, a)] == first
    more = add_events(world.db, a, [Spec(None, "a1", 9)])
    with world.db.unit_of_work() as s:
        enqueue(s, actor=system_for_brand(a), kind=INDEX_PEOPLE)
    assert index_rows(world.db, a) == [("u:u1", i) for i in first] + [("a:a1", more[0])]


def test_person_lookups_never_read_another_brand(world: World) -> None:
    a, b = world.brands[0].id, world.brands[1].id
    mine = add_events(world.db, a, [Spec("u1", None, 0)])
    add_events(world.db, b, [Spec("u1", None, 1), Spec(None, "a1", 2)])
    index(world.db, a, limit=10)
    index(world.db, b, limit=1)  # B partly indexed, its tail above its own cursor
    with world.db.unit_of_work(Scope(brand_id=a), write=False) as s:
        repo = ProfileRepository(s)
        got = repo.events(user_ids=["u1"], anonymous_ids=["a1"], cursor=None, rank=0, limit=10)
        assert [e.id for e in got] == mine
        assert repository.person_events(s, user_ids=["u1"], anonymous_ids=["a1"]) == got
        assert repo.event_times(user_ids=["u1"], anonymous_ids=["a1"], limit=10) == [got[0].timestamp]


events_st = st.lists(
    st.builds(
        Spec,
        user_id=st.one_of(st.none(), st.sampled_from(USERS)),
        anonymous_id=st.sampled_from(ANONYMOUS),
        minute=st.integers(0, 6),
    ),
    max_size=24,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=events_st,
    indexed=st.integers(0, 30),
    user_ids=st.lists(st.sampled_from(USERS), max_size=2, unique=True),
    anonymous_ids=st.lists(st.sampled_from(ANONYMOUS), max_size=2, unique=True),
    page=st.integers(1, 5),
    rank=st.integers(0, 2),
)
def test_reads_through_the_index_equal_a_scan(
    brand: int,
    world: World,
    specs: list[Spec],
    indexed: int,
    user_ids: list[str],
    anonymous_ids: list[str],
    page: int,
    rank: int,
) -> None:
    db = world.db
    try:
        add_events(db, brand, specs)
        if indexed:
            index(db, brand, limit=indexed)  # the rest stays in the tail above the cursor
        with db.unit_of_work(Scope(brand_id=brand), write=False) as s:
            everything = list(s.scalars(select(Event).order_by(Event.id)))
            mine = scan(everything, user_ids, anonymous_ids)
            repo = ProfileRepository(s)
            # The timeline, page by page: the pages' concatenation is the scan in (time, id) order.
            expected = sorted(mine, key=lambda e: (e.timestamp, e.id), reverse=True)
            seen: list[Any] = []
            cursor: Cursor | None = None
            while True:
                rows = repo.events(
                    user_ids=user_ids, anonymous_ids=anonymous_ids, cursor=cursor, rank=rank, limit=page
                )
                if not rows:
                    break
                assert len(rows) <= page
                seen += [e.id for e in rows]
                last = rows[-1]
                cursor = Cursor(at=last.timestamp, rank=rank, id=last.id)
            assert seen == [e.id for e in expected]
            newest = sorted(mine, key=lambda e: e.id, reverse=True)
            times = repo.event_times(user_ids=user_ids, anonymous_ids=anonymous_ids, limit=page)
            assert times == [e.timestamp for e in newest[:page]]
            before = newest[0].id if newest else None
            got = repository.person_events(
                s, user_ids=user_ids, anonymous_ids=anonymous_ids, before_id=before, limit=page
            )
            assert [e.id for e in got] == [e.id for e in newest[1 : page + 1]]
            # The operator's stream filtered by a user id (index + tail) equals a scan, page by page.
            for user in user_ids:
                theirs = [
                    e.id for e in sorted(everything, key=lambda e: e.id, reverse=True) if e.user_id == user
                ]
                pages: list[int] = []
                below: int | None = None
                while batch := repository.events(s, user_id=user, before_id=below, limit=page):
                    pages += [e.id for e in batch]
                    below = batch[-1].id
                assert pages == theirs
                named = repository.events(s, user_id=user, event="Product Viewed", limit=page)
                assert [e.id for e in named] == theirs[:page]
                assert repository.events(s, user_id=user, event="Other", limit=page) == []
    finally:
        wipe(db, brand)


def test_the_scheduled_job_drops_old_minute_counts_of_its_brand_only(world: World) -> None:
    a, b = world.brands[0].id, world.brands[1].id
    now = int(utcnow().timestamp()) // 60
    old, kept = now - int(MINUTES_KEPT.total_seconds()) // 60 - 5, now - 30
    with world.db.unit_of_work() as s:
        s.add_all([EventMinute(brand_id=brand, minute=m, count=7) for brand in (a, b) for m in (old, kept)])
    with world.db.unit_of_work() as s:
        enqueue(s, actor=system_for_brand(a), kind=INDEX_PEOPLE)  # the memory queue runs it at once
    with world.db.unit_of_work(write=False) as s:
        rows = s.execute(
            select(EventMinute.brand_id, EventMinute.minute).order_by(
                EventMinute.brand_id, EventMinute.minute
            )
        )
        assert [tuple(r) for r in rows] == [(a, kept), (b, old), (b, kept)]
