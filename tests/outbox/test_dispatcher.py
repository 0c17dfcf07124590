from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Scope, system_for_brand
from huiyuan.members.models import Member
from huiyuan.members.schemas import MemberEnroll
from huiyuan.members.service import enroll_member
from huiyuan.outbox.dispatcher import dispatch_pending, drain
from huiyuan.outbox.handlers import handlers_for, matches, on, subscribe, unsubscribe
from huiyuan.outbox.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from huiyuan.outbox.repository import OutboxRepository
from huiyuan.outbox.service import emit
from tests.conftest import World


def _emit(db: Database, brand_id: int | None, type_: str, n: int = 1) -> list[int]:
    ids = []
    with db.unit_of_work() as s:
        for i in range(n):
            e = emit(
                s, type=type_, brand_id=brand_id, aggregate_type="test", aggregate_id=i, payload={"i": i}
            )
            s.flush()
            ids.append(e.id)
    return ids


def _event(db: Database, event_id: int) -> OutboxEvent:
    with db.unit_of_work(write=False) as s:
        e = s.get(OutboxEvent, event_id)
        assert e is not None
        return e


@pytest.fixture
def calls() -> Iterator[list[tuple[str, int, int | None]]]:
    seen: list[tuple[str, int, int | None]] = []
    registered = []

    def recorder(session: Session, event: OutboxEvent) -> None:
        seen.append((event.type, event.id, event.brand_id))

    for pattern in ("test.ok", "member.*"):
        subscribe(pattern, recorder)
        registered.append(recorder)
    yield seen
    unsubscribe(recorder)


def test_rolled_back_change_leaves_no_event(world: World) -> None:
    db, alpha = world.db, world.brands[0]
    with pytest.raises(RuntimeError), db.unit_of_work(Scope(brand_id=alpha.id)) as s:
        member = enroll_member(
            s, actor=system_for_brand(alpha.id), data=MemberEnroll(enroll_channel="store", name="回滚")
        )
        s.flush()
        assert member.id is not None
        assert s.scalars(select(OutboxEvent)).all()  # written in the same transaction …
        raise RuntimeError("the request failed after enrolling")
    with db.unit_of_work(write=False) as s:  # … and gone with it
        assert s.scalars(select(OutboxEvent)).all() == []
        assert s.scalars(select(Member)).all() == []


def test_committed_enrollment_reaches_member_handlers_once(world: World, calls: list) -> None:
    db, alpha = world.db, world.brands[0]
    with db.unit_of_work(Scope(brand_id=alpha.id)) as s:
        enroll_member(s, actor=system_for_brand(alpha.id), data=MemberEnroll(enroll_channel="web", name="甲"))
    first = dispatch_pending(db)
    second = dispatch_pending(db)
    assert first.dispatched == 1 and first.handler_calls == 1
    assert second.taken == 0 and second.handler_calls == 0
    assert [(t, b) for t, _, b in calls] == [("member.enrolled", alpha.id)]


def test_handler_writes_commit_with_the_event_and_see_only_its_brand(world: World) -> None:
    db, alpha, beta = world.db, world.brands[0], world.brands[1]
    seen_brands: list[set[int]] = []

    def handler(session: Session, event: OutboxEvent) -> None:
        visible = {e.brand_id for e in session.scalars(select(OutboxEvent)) if e.brand_id is not None}
        seen_brands.append(visible)
        audit.record(
            session,
            actor=system_for_brand(event.brand_id or 0),
            action="test.handled",
            entity_type="outbox_event",
            entity_id=event.id,
            brand_id=event.brand_id,
        )

    subscribe("test.scoped", handler)
    try:
        _emit(db, alpha.id, "test.scoped")
        _emit(db, beta.id, "test.other")
        assert dispatch_pending(db).dispatched == 2
    finally:
        unsubscribe(handler)
    assert seen_brands == [{alpha.id}]  # the handler's session was narrowed to the event's brand
    with db.unit_of_work(write=False) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == "test.handled")).all()
        assert [r.brand_id for r in rows] == [alpha.id]


def test_failing_handler_retries_with_backoff_and_does_not_block(world: World, calls: list) -> None:
    db, alpha = world.db, world.brands[0]
    failures = {"left": 2}

    def flaky(session: Session, event: OutboxEvent) -> None:
        audit.record(
            session,
            actor=system_for_brand(alpha.id),
            action="test.partial",
            entity_type="x",
            entity_id=1,
            brand_id=alpha.id,
        )
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ValueError("downstream not ready")

    subscribe("test.flaky", flaky)
    try:
        (bad,) = _emit(db, alpha.id, "test.flaky")
        (good,) = _emit(db, alpha.id, "test.ok")
        t0 = utcnow()
        stats = dispatch_pending(db, now=t0)
        assert stats.dispatched == 1 and stats.failed == 1
        e = _event(db, bad)
        assert e.dispatched_at is None and e.attempts == 1
        assert "ValueError: downstream not ready" in (e.last_error or "")
        assert e.next_attempt_at == t0 + timedelta(seconds=5)
        assert _event(db, good).dispatched_at is not None  # the later event went on
        assert [c[1] for c in calls] == [good]
        with db.unit_of_work(write=False) as s:  # the failed handler's writes were rolled back
            assert s.scalars(select(AuditEntry).where(AuditEntry.action == "test.partial")).all() == []

        assert dispatch_pending(db, now=t0 + timedelta(seconds=4)).taken == 0  # not due yet
        dispatch_pending(db, now=t0 + timedelta(seconds=5))
        e = _event(db, bad)
        assert e.attempts == 2 and e.next_attempt_at == t0 + timedelta(seconds=15)  # 5 s + 10 s

        stats = dispatch_pending(db, now=t0 + timedelta(seconds=15))
        assert stats.dispatched == 1
        e = _event(db, bad)
        assert e.dispatched_at is not None and e.last_error is None
    finally:
        unsubscribe(flaky)
    with db.unit_of_work(write=False) as s:
        assert len(s.scalars(select(AuditEntry).where(AuditEntry.action == "test.partial")).all()) == 1


def test_deliveries_only_for_matching_subscriptions_of_the_same_brand(world: World) -> None:
    db, alpha, beta = world.db, world.brands[0], world.brands[1]
    with db.unit_of_work() as s:
        subs = {
            "a_member": WebhookSubscription(
                brand_id=alpha.id, url="https://a.example", secret_enc="x", event_types=["member.*"]
            ),
            "a_all": WebhookSubscription(
                brand_id=alpha.id, url="https://a2.example", secret_enc="x", event_types=["*"]
            ),
            "a_order": WebhookSubscription(
                brand_id=alpha.id, url="https://a3.example", secret_enc="x", event_types=["order.paid"]
            ),
            "a_off": WebhookSubscription(
                brand_id=alpha.id, url="https://a4.example", secret_enc="x", event_types=["*"], active=False
            ),
            "b_all": WebhookSubscription(
                brand_id=beta.id, url="https://b.example", secret_enc="x", event_types=["*"]
            ),
        }
        s.add_all(subs.values())
        s.flush()
        ids = {k: v.id for k, v in subs.items()}
    with db.unit_of_work(Scope(brand_id=alpha.id)) as s:
        enroll_member(s, actor=system_for_brand(alpha.id), data=MemberEnroll(enroll_channel="web"))
    stats = dispatch_pending(db)
    assert stats.deliveries == 2
    with db.unit_of_work(write=False) as s:
        got = sorted(d.subscription_id for d in s.scalars(select(WebhookDelivery)))
        assert got == sorted([ids["a_member"], ids["a_all"]])
        assert all(d.brand_id == alpha.id for d in s.scalars(select(WebhookDelivery)))
    assert dispatch_pending(db).deliveries == 0  # nothing twice


def test_drain_handles_more_than_one_batch(world: World, calls: list) -> None:
    _emit(world.db, world.brands[0].id, "test.ok", n=7)
    stats = drain(world.db, batch=3)
    assert stats.dispatched == 7 and len(calls) == 7
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)  # id order


def test_two_dispatchers_never_take_the_same_event(world: World) -> None:
    db = world.db
    if db.is_sqlite:
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE; SKIP LOCKED is PostgreSQL's")
    ids = _emit(db, world.brands[0].id, "test.none", n=4)
    with db.unit_of_work() as first:
        taken = [e.id for e in OutboxRepository(first).due_events(utcnow(), 2)]
        with db.unit_of_work() as second:
            other = [e.id for e in OutboxRepository(second).due_events(utcnow(), 10)]
    assert taken == ids[:2] and other == ids[2:]


@given(
    st.lists(st.sampled_from(["member", "order", "consent", "points"]), min_size=1, max_size=3),
    st.sampled_from(["enrolled", "paid", "changed"]),
)
def test_pattern_matching(parts: list[str], leaf: str) -> None:
    event_type = ".".join([*parts, leaf])
    assert matches("*", event_type)
    assert matches(event_type, event_type)
    assert matches(parts[0] + ".*", event_type)
    assert not matches(parts[0] + "x.*", event_type)
    assert not matches(event_type + ".extra", event_type)


def test_decorator_registers_handler() -> None:
    @on("loyalty.test_only")
    def handler(session: Session, event: OutboxEvent) -> None:
        return None

    try:
        assert [r.handler for r in handlers_for("loyalty.test_only")] == [handler]
        assert handlers_for("loyalty.other") == []
    finally:
        unsubscribe(handler)


def test_a_failure_inside_a_batch_costs_only_its_event(world: World) -> None:
    """Events are handled together; one failing handler rolls back the batch's savepoint, the events
    before it are handled again (with what handlers remembered in ``session.info`` forgotten), the
    failing one records its error without running again, and the later ones go on."""
    db, alpha = world.db, world.brands[0]
    runs: list[int] = []

    def once_per_batch(session: Session, event: OutboxEvent) -> None:
        runs.append(event.payload["i"])
        if event.payload["i"] == 2:
            raise ValueError("poison")
        seen: set[str] = session.info.setdefault("test.seen", set())
        if "x" in seen:  # a later event of the batch: the first one did the work
            return
        audit.record(
            session,
            actor=system_for_brand(alpha.id),
            action="test.once",
            entity_type="x",
            entity_id=event.payload["i"],
            brand_id=alpha.id,
        )
        seen.add("x")

    subscribe("test.batch", once_per_batch)
    try:
        ids = _emit(db, alpha.id, "test.batch", n=5)
        stats = dispatch_pending(db)
    finally:
        unsubscribe(once_per_batch)
    assert (stats.taken, stats.dispatched, stats.failed) == (5, 4, 1)
    # 0, 1, 2 (fails) in the batch; 0, 1 again; 3, 4 together. The failing event ran once.
    assert runs == [0, 1, 2, 0, 1, 3, 4]
    assert [_event(db, i).dispatched_at is not None for i in ids] == [True, True, False, True, True]
    assert "ValueError: poison" in (_event(db, ids[2]).last_error or "")
    with db.unit_of_work(write=False) as s:
        # Exactly one: the rolled-back run's memory was forgotten, and the batch kept it afterwards.
        done = s.scalars(select(AuditEntry.entity_id).where(AuditEntry.action == "test.once")).all()
    assert done == ["0"]


def test_a_failing_preparer_skips_the_later_preparers_of_its_events(world: World) -> None:
    from huiyuan.outbox import handlers as registry

    db, alpha = world.db, world.brands[0]
    prepared: list[int] = []
    handled: list[int] = []

    def broken(session: Session, events: list[OutboxEvent]) -> None:
        raise RuntimeError("no")

    def builds_on_it(session: Session, events: list[OutboxEvent]) -> None:
        prepared.extend(e.id for e in events)

    def per_event(session: Session, event: OutboxEvent) -> None:
        handled.append(event.id)

    registry.prepare("test.prep")(broken)
    registry.prepare("test.prep")(builds_on_it)
    subscribe("test.prep", per_event)
    try:
        ids = _emit(db, alpha.id, "test.prep", n=2)
        assert dispatch_pending(db).dispatched == 2
    finally:
        unsubscribe(per_event)
        registry._preparers[:] = [p for p in registry._preparers if p[0] != "test.prep"]
    assert prepared == [] and handled == ids


def test_lookahead_preparers_run_before_handlers_only(world: World) -> None:
    from huiyuan.outbox import handlers as registry
    from huiyuan.outbox.dispatcher import run_preparers

    db, alpha = world.db, world.brands[0]
    calls: list[str] = []

    def does_work(session: Session, events: list[OutboxEvent]) -> None:
        calls.append("work")

    def looks_ahead(session: Session, events: list[OutboxEvent]) -> None:
        calls.append("lookahead")

    registry.prepare("test.look")(does_work)
    registry.prepare("test.look", lookahead=True)(looks_ahead)
    try:
        ids = _emit(db, alpha.id, "test.look", n=2)
        with db.unit_of_work() as s:
            run_preparers(s, [_event(db, i) for i in ids])  # a bulk import: no handler follows
        assert calls == ["work"]
        assert dispatch_pending(db).dispatched == 2
        assert calls == ["work", "work", "lookahead"]
    finally:
        registry._preparers[:] = [p for p in registry._preparers if p[0] != "test.look"]
        registry._lookahead.discard(looks_ahead)
