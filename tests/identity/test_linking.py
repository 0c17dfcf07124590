"""Real-time linking on both databases: junk, limits and member clashes as conflicts, merges that
keep the oldest OneID, un-merge, and a batch recompute that agrees with real time."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from huiyuan.identity import recompute
from huiyuan.identity.linking import Ident
from huiyuan.identity.models import IdentityConflict, IdentityLink, OneIdPerson
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from tests.factories import make_brand
from tests.identity.helpers import assignment, changes, ident, link, oneid_of, partition, writer


@pytest.fixture
def brand(db: Database) -> int:
    return make_brand(db, "alpha")


def _count(db: Database, model: type, **where: object) -> int:
    with db.unit_of_work(write=False) as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return int(s.scalar(stmt) or 0)


def test_links_merge_into_the_oldest_oneid(db: Database, brand: int) -> None:
    assert link(db, brand, "anonymous_id:a1", "device_id:d1") == "linked"
    first = oneid_of(db, brand, "anonymous_id:a1")
    assert link(db, brand, "user_id:u1", "phone:13800138000") == "linked"
    second = oneid_of(db, brand, "user_id:u1")
    assert first is not None and second is not None and first < second
    assert link(db, brand, "device_id:d1", "user_id:u1") == "merged"
    assert {
        oneid_of(db, brand, s)
        for s in ("anonymous_id:a1", "device_id:d1", "user_id:u1", "phone:+86 138 0013 8000")
    } == {first}
    assert changes(db, brand) == [("merge", first, [second], "link")]
    with db.unit_of_work(write=False) as s:
        retired = s.get(OneIdPerson, second)
        assert retired is not None and retired.status == "retired" and retired.merged_into == first
    # the same assertion again changes nothing
    assert link(db, brand, "device_id:d1", "user_id:u1") == "exists"
    assert link(db, brand, "device_id:d1", "user_id:u1", source="order") == "linked"  # another source
    assert len(changes(db, brand)) == 1


def test_junk_values_never_become_identifiers(db: Database, brand: int) -> None:
    for junk in ("null", "0", "-1", "anonymous", "0000-000", "undefined"):
        assert link(db, brand, f"device_id:{junk}", "user_id:u1") == "junk"
    assert assignment(db, brand) == {}


def test_per_type_limit_turns_a_link_into_a_conflict(db: Database, brand: int) -> None:
    with writer(db, brand) as w:
        for i in range(10):
            assert (
                w.link(
                    Ident("user_id", "u1"), Ident("device_id", f"d{i}"), source="identify", rule="t"
                ).status
                == "linked"
            )
        result = w.link(Ident("user_id", "u1"), Ident("device_id", "d10"), source="identify", rule="t")
    assert result.status == "conflict" and result.reason == "limit-exceeded"
    # the eleventh device stays a person of its own; the link is kept as refused
    assert oneid_of(db, brand, "device_id:d10") != oneid_of(db, brand, "user_id:u1")
    with db.unit_of_work(write=False) as s:
        conflict = s.get(IdentityConflict, result.conflict_id)
        assert (
            conflict is not None and conflict.detail["type"] == "device_id" and conflict.detail["limit"] == 10
        )
        assert s.get(IdentityLink, result.link_id).status == "refused"  # type: ignore[union-attr]
    # asserted again: the same conflict counts another occurrence, no new one
    assert link(db, brand, "user_id:u1", "device_id:d10") == "conflict"
    assert _count(db, IdentityConflict) == 1
    with db.unit_of_work(write=False) as s:
        assert s.get(IdentityConflict, result.conflict_id).occurrences == 2  # type: ignore[union-attr]


def test_a_shared_device_cannot_glue_two_members_together(db: Database, brand: int) -> None:
    assert link(db, brand, "member_number:M1", "device_id:shared") == "linked"
    assert link(db, brand, "member_number:M2", "phone:13900001111") == "linked"
    assert link(db, brand, "phone:13900001111", "device_id:shared") == "conflict"
    assert oneid_of(db, brand, "member_number:M1") != oneid_of(db, brand, "member_number:M2")
    with db.unit_of_work(write=False) as s:
        conflict = s.scalars(select(IdentityConflict)).one()
        assert conflict.reason == "member-clash"
    # two phones are allowed, a third is not
    assert link(db, brand, "member_number:M2", "phone:13900002222") == "linked"
    assert link(db, brand, "member_number:M2", "phone:13900003333") == "conflict"


def test_unlink_splits_and_the_part_with_the_oldest_identifier_keeps_the_oneid(
    db: Database, brand: int
) -> None:
    link(db, brand, "anonymous_id:a1", "device_id:d1")
    keeper = oneid_of(db, brand, "anonymous_id:a1")
    link(db, brand, "user_id:u1", "phone:13800138000")
    other = oneid_of(db, brand, "user_id:u1")
    link(db, brand, "device_id:d1", "user_id:u1")
    assert oneid_of(db, brand, "phone:13800138000") == keeper
    with writer(db, brand, "user:alice") as w:
        bridge = w.repo.link(
            *sorted((w.find(w.key(ident("device_id:d1"))).id, w.find(w.key(ident("user_id:u1"))).id)),
            "identify",
        )  # type: ignore[arg-type,union-attr]
        assert bridge is not None
        splits = w.remove_links([bridge], reason="two people on one tablet", block=True)
    # the younger part gets its own previous OneID back
    assert splits == [(keeper, [other])]
    assert oneid_of(db, brand, "anonymous_id:a1") == oneid_of(db, brand, "device_id:d1") == keeper
    assert oneid_of(db, brand, "user_id:u1") == oneid_of(db, brand, "phone:13800138000") == other
    assert changes(db, brand)[-1] == ("split", keeper, [other], "unlink")
    with db.unit_of_work(write=False) as s:
        assert s.get(OneIdPerson, other).status == "active"  # type: ignore[union-attr]
    # a pair unlinked by hand is not linked again automatically
    assert link(db, brand, "device_id:d1", "user_id:u1") == "blocked"
    assert link(db, brand, "device_id:d1", "user_id:u1", source="order") == "blocked"


def test_unlink_that_leaves_the_component_connected_changes_nothing(db: Database, brand: int) -> None:
    link(db, brand, "user_id:u1", "device_id:d1")
    link(db, brand, "user_id:u1", "device_id:d1", source="order")
    before = assignment(db, brand)
    with writer(db, brand) as w:
        first = w.repo.active_edges(brand)
        assert len(first) == 2
        links = [link_ for link_ in w.repo.links_touching([n for n in before]) if link_.source == "order"]
        assert w.remove_links(links, reason="x", block=False) == []
    assert assignment(db, brand) == before


def _random_links(seed: int, n: int = 120) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    kinds = ["device_id", "anonymous_id", "user_id", "wechat_openid", "email"]
    out = []
    for _ in range(n):
        a, b = rng.sample(kinds, 2)
        out.append(
            (
                f"{a}:{a[0]}{rng.randrange(40)}",
                f"{b}:{b[0]}{rng.randrange(40)}{'@x.cn' if b == 'email' else ''}",
            )
        )
    return out


def test_batch_recompute_agrees_with_real_time_and_keeps_oneids(db: Database, brand: int) -> None:
    pairs = _random_links(1)
    with writer(db, brand) as w:
        for a, b in pairs:
            w.link(ident(a), ident(b), source="identify", rule="t")
        # un-merge a few links so splits happened too
        for link_ in w.repo.links_touching([n.id for n in w.repo.nodes_of(range(1, 10_000))])[:8]:
            w.remove_links([link_], reason="test", block=True)
    real_time = assignment(db, brand)
    history = changes(db, brand)
    with db.unit_of_work(system_for_brand(brand).scope) as s:
        stats = recompute.recompute(s, brand_id=brand, actor="test")
    assert stats["changed"] == 0 and stats["merges"] == 0 and stats["splits"] == 0
    assert assignment(db, brand) == real_time  # stable: nothing moved, no OneID renamed
    assert changes(db, brand) == history


def test_batch_recompute_from_raw_links_gives_the_same_people(db: Database) -> None:
    """The same links applied in real time in one brand, and loaded raw then recomputed in another,
    group the identifiers identically."""
    pairs = [p for p in _random_links(2, 80) if not p[0].startswith("email") and not p[1].startswith("email")]
    a, b = make_brand(db, "alpha"), make_brand(db, "beta")
    with db.unit_of_work(system_for_brand(a).scope) as s:
        from huiyuan.identity import config

        w = config.writer(s, a, "test")
        # generous limits so no conflict decides anything here
        w.book = w.book.build({t: {"max_per_person": None} for t in w.book.types})
        for x, y in pairs:
            w.link(ident(x), ident(y), source="identify", rule="t")
    with db.unit_of_work(system_for_brand(b).scope) as s:
        w = config.writer(s, b, "test")
        for x, y in pairs:  # every identifier its own OneID, links written without merging
            nx, ny = w.ensure(ident(x), source="import"), w.ensure(ident(y), source="import")
            assert nx is not None and ny is not None
            if nx.id != ny.id and w.repo.link(min(nx.id, ny.id), max(nx.id, ny.id), "import") is None:
                w._new_link(nx, ny, "import", "raw", 1.0, "active")
        stats = recompute.recompute(s, brand_id=b, actor="test")
    assert stats["merges"] > 0
    assert partition(db, a) == partition(db, b)
    # and recomputing again is a fixpoint
    with db.unit_of_work(system_for_brand(b).scope) as s:
        assert recompute.recompute(s, brand_id=b, actor="test")["changed"] == 0


def test_recompute_flags_oneids_over_a_lowered_limit(db: Database, brand: int) -> None:
    for i in range(4):
        link(db, brand, "user_id:u1", f"device_id:d{i}")
    from huiyuan.identity import config

    with db.unit_of_work(system_for_brand(brand).scope) as s:
        config.settings_row(s, brand).types = {"device_id": {"max_per_person": 2}}
    with db.unit_of_work(system_for_brand(brand).scope) as s:
        assert recompute.recompute(s, brand_id=brand, actor="test")["over_limit"] == 1
    with db.unit_of_work(system_for_brand(brand).scope) as s:
        assert recompute.recompute(s, brand_id=brand, actor="test")["over_limit"] == 0  # flagged once
    with db.unit_of_work(write=False) as s:
        conflict = s.scalars(select(IdentityConflict)).one()
        assert conflict.reason == "over-limit" and conflict.detail["holds"] == {"device_id": 4}
