"""The operator's stream filtered by a user id or an anonymous id reads the person index (``u:``, and
``a:`` + ``s:`` for an anonymous id) up to the cursor and the store above it; events indexed before
``s:`` rows existed are scanned until the backfill has given them theirs. Whatever the split — cursor,
backfill mark, other filters, page size — the pages equal a plain scan of the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ColumnElement, delete, select, update

from huiyuan.events import repository, store
from huiyuan.events.jobs import INDEX_PEOPLE
from huiyuan.events.models import Event, EventPeopleCursor, EventPerson
from huiyuan.jobs.service import enqueue
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Scope, system_for_brand
from tests.conftest import World

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
USERS = ("u1", "u2")
ANONYMOUS = ("a1", "a2", "a3")
_messages = count()


@dataclass(frozen=True)
class Spec:
    """One stored event: who sent it and what the stream's other filters look at."""

    user_id: str | None
    anonymous_id: str | None
    type: str = "track"
    event: str = "A"
    source_id: int = 1
    flagged: bool = False


def add(db: Database, brand_id: int, specs: Sequence[Spec]) -> list[int]:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        rows = [
            Event(
                brand_id=brand_id,
                source_id=spec.source_id,
                message_id=f"s-{next(_messages)}",
                type=spec.type,
                event=spec.event,
                user_id=spec.user_id,
                anonymous_id=spec.anonymous_id,
                timestamp=T0 + timedelta(minutes=n % 5),
                received_at=T0,
                # Unflagged: SQL NULL as ingestion stores it (None would be JSON ``null``).
                **({"violations": [{"rule": "type"}]} if spec.flagged else {}),
            )
            for n, spec in enumerate(specs)
        ]
        s.add_all(rows)
        s.flush()
        return [e.id for e in rows]


def index(db: Database, brand_id: int, limit: int) -> int:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        return store.index_people(s, brand_id=brand_id, limit=limit, at=utcnow())


def backfill(db: Database, brand_id: int, limit: int) -> int:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        return store.backfill_people(s, brand_id=brand_id, limit=limit, at=utcnow())


def as_before_signed_rows(db: Database, brand_id: int) -> None:
    """The brand's index as a database indexed before ``s:`` rows existed has it."""
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        s.execute(delete(EventPerson).where(EventPerson.person_key.like("s:%")))
        s.execute(update(EventPeopleCursor).values(signed_backfill_id=None))


def marks(db: Database, brand_id: int) -> tuple[int, int]:
    with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
        return repository.people_index(s)


def signed_rows(db: Database, brand_id: int) -> list[tuple[str, int]]:
    with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
        stmt = (
            select(EventPerson.person_key, EventPerson.event_id)
            .where(EventPerson.person_key.like("s:%"))
            .order_by(EventPerson.event_id)
        )
        return [(k, i) for k, i in s.execute(stmt)]


def wipe(db: Database, brand_id: int) -> None:
    with db.unit_of_work(Scope(brand_id=brand_id)) as s:
        for model in (EventPerson, EventPeopleCursor, Event):
            s.execute(delete(model).where(model.brand_id == brand_id))


def plain_scan(s: Any, *, before_id: int | None, limit: int, **filters: Any) -> list[int]:
    """The stream as a scan of the store reads it (newest first by id), whatever is indexed."""
    conds: list[ColumnElement[bool]] = []
    for name in ("type", "event", "user_id", "anonymous_id", "source_id"):
        if filters.get(name) is not None:
            conds.append(getattr(Event, name) == filters[name])
    if filters.get("flagged"):
        conds.append(Event.violations.is_not(None))
    if before_id is not None:
        conds.append(Event.id < before_id)
    stmt = select(Event.id).where(*conds).order_by(Event.id.desc()).limit(limit)
    return list(s.scalars(stmt))


def pages(s: Any, page: int, **filters: Any) -> list[int]:
    """Every page of the stream, each continuing below the last id of the one before."""
    seen: list[int] = []
    below: int | None = None
    while batch := repository.events(s, before_id=below, limit=page, **filters):
        assert len(batch) <= page
        seen += [e.id for e in batch]
        below = batch[-1].id
    return seen


def test_an_event_with_both_ids_is_found_by_its_anonymous_id_through_the_index(world: World) -> None:
    a = world.brands[0].id
    ids = add(world.db, a, [Spec("u1", "a1"), Spec(None, "a1"), Spec("u2", None), Spec("u2", "a2")])
    index(world.db, a, limit=10)
    assert signed_rows(world.db, a) == [("s:a1", ids[0]), ("s:a2", ids[3])]
    with world.db.unit_of_work(Scope(brand_id=a), write=False) as s:
        assert [e.id for e in repository.events(s, anonymous_id="a1")] == [ids[1], ids[0]]
        assert [e.id for e in repository.events(s, anonymous_id="a2", user_id="u2")] == [ids[3]]
        # The profile's rule does not change: the anonymous id's own events are only those without a user.
        assert [e.id for e in repository.person_events(s, user_ids=[], anonymous_ids=["a1"])] == [ids[1]]
    # The stream reads the index, not the store: an event whose ``s:`` row is gone is not found.
    with world.db.unit_of_work(Scope(brand_id=a)) as s:
        s.execute(delete(EventPerson).where(EventPerson.person_key == "s:a1"))
        assert [e.id for e in repository.events(s, anonymous_id="a1")] == [ids[1]]


def test_the_backfill_gives_events_indexed_before_their_signed_rows(world: World) -> None:
    a = world.brands[0].id
    old = add(world.db, a, [Spec("u1", "a1") for _ in range(5)])
    index(world.db, a, limit=10)
    as_before_signed_rows(world.db, a)
    assert marks(world.db, a) == (old[-1], old[-1])  # NULL: everything indexed waits
    with world.db.unit_of_work(Scope(brand_id=a), write=False) as s:
        # Exact meanwhile: what the backfill has not reached is scanned.
        assert [e.id for e in repository.events(s, anonymous_id="a1")] == old[::-1]
    new = add(world.db, a, [Spec("u2", "a1")])
    assert index(world.db, a, limit=10) == 1  # the new event gets its row; the mark stays
    assert marks(world.db, a) == (new[0], old[-1])
    assert backfill(world.db, a, limit=2) == 2  # the newest old ones first
    assert marks(world.db, a) == (new[0], old[3] - 1)
    with world.db.unit_of_work(Scope(brand_id=a), write=False) as s:
        assert [e.id for e in repository.events(s, anonymous_id="a1")] == (old + new)[::-1]
        assert [e.id for e in repository.events(s, anonymous_id="a1", limit=2)] == [new[0], old[4]]
    # A chunk run again (its mark lost) adds nothing twice; the mark never goes up.
    with world.db.unit_of_work(Scope(brand_id=a)) as s:
        s.execute(update(EventPeopleCursor).values(signed_backfill_id=old[-1]))
    assert backfill(world.db, a, limit=2) == 2
    assert backfill(world.db, a, limit=2) == 2
    assert backfill(world.db, a, limit=2) == 1
    assert marks(world.db, a) == (new[0], 0)
    assert backfill(world.db, a, limit=2) == 0
    assert signed_rows(world.db, a) == [("s:a1", i) for i in old + new]


def test_the_scheduled_job_indexes_new_events_then_backfills(world: World) -> None:
    a = world.brands[0].id
    old = add(world.db, a, [Spec("u1", "a1"), Spec(None, "a2")])
    index(world.db, a, limit=10)
    as_before_signed_rows(world.db, a)
    new = add(world.db, a, [Spec("u2", "a2")])
    with world.db.unit_of_work() as s:
        enqueue(s, actor=system_for_brand(a), kind=INDEX_PEOPLE)  # the memory queue runs it at once
    assert marks(world.db, a) == (new[0], 0)
    assert signed_rows(world.db, a) == [("s:a1", old[0]), ("s:a2", new[0])]


spec_st = st.builds(
    Spec,
    user_id=st.one_of(st.none(), st.sampled_from(USERS)),
    anonymous_id=st.sampled_from(ANONYMOUS),
    type=st.sampled_from(("track", "page")),
    event=st.sampled_from(("A", "B")),
    source_id=st.sampled_from((1, 2)),
    flagged=st.booleans(),
)
filters_st = st.fixed_dictionaries(
    {
        "type": st.one_of(st.none(), st.sampled_from(("track", "page"))),
        "event": st.one_of(st.none(), st.sampled_from(("A", "B"))),
        "source_id": st.one_of(st.none(), st.sampled_from((1, 2))),
        "flagged": st.booleans(),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.lists(spec_st, max_size=16),
    after=st.lists(spec_st, max_size=8),
    first=st.integers(0, 20),
    legacy=st.booleans(),
    second=st.integers(0, 10),
    backfills=st.lists(st.integers(1, 6), max_size=2),
    filters=filters_st,
    page=st.integers(1, 4),
)
def test_the_filtered_stream_equals_a_scan(
    world: World,
    before: list[Spec],
    after: list[Spec],
    first: int,
    legacy: bool,
    second: int,
    backfills: list[int],
    filters: dict[str, Any],
    page: int,
) -> None:
    db = world.db
    brand = world.brands[0].id
    try:
        add(db, brand, before)
        if first:
            index(db, brand, limit=first)
        if legacy:
            as_before_signed_rows(db, brand)
        add(db, brand, after)
        if second:
            index(db, brand, limit=second)  # what is left stays in the tail above the cursor
        for limit in backfills:
            backfill(db, brand, limit=limit)
        cursor, mark = marks(db, brand)
        assert 0 <= mark <= cursor
        with db.unit_of_work(Scope(brand_id=brand), write=False) as s:
            newest = s.scalar(select(Event.id).order_by(Event.id.desc()).limit(1))
            who: list[dict[str, Any]] = [{"anonymous_id": a} for a in ANONYMOUS]
            who += [{"user_id": u} for u in USERS] + [{"user_id": "u1", "anonymous_id": "a1"}]
            for person in who:
                wanted = {**filters, **person}
                everything = plain_scan(s, before_id=None, limit=1000, **wanted)
                assert pages(s, page, **wanted) == everything
                # One page from anywhere, on either side of the cursor and the backfill mark.
                for below in {cursor, mark, cursor + 1, mark + 1, (newest or 0) + 1}:
                    got = [e.id for e in repository.events(s, before_id=below, limit=page, **wanted)]
                    assert got == plain_scan(s, before_id=below, limit=page, **wanted)
    finally:
        wipe(db, brand)


@pytest.mark.parametrize("flagged", [False, True])
def test_without_a_person_filter_the_stream_is_the_store(world: World, flagged: bool) -> None:
    a = world.brands[0].id
    ids = add(world.db, a, [Spec("u1", "a1", flagged=True), Spec(None, "a2"), Spec("u2", None, flagged=True)])
    index(world.db, a, limit=2)
    with world.db.unit_of_work(Scope(brand_id=a), write=False) as s:
        got = [e.id for e in repository.events(s, flagged=flagged)]
        assert got == ([ids[2], ids[0]] if flagged else ids[::-1])
