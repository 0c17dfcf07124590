"""Pure parts of OneID: identifier rules (junk values, normalisation, limits) and the batch engine
(string factorisation, components, stable assignment)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huiyuan.identity import graph
from huiyuan.identity.rules import TypeBook, blind_index, display, to_e164
from huiyuan.kit import pii


@pytest.mark.parametrize(
    "value", ["null", "NULL", "0", "-1", "anonymous", "0000", "0-0-0", "-", "  ", "undefined"]
)
def test_junk_values_are_refused_for_every_type(value: str) -> None:
    book = TypeBook.build()
    for code in ("device_id", "anonymous_id", "wechat_openid", "phone", "member_number"):
        _, reason = book.check(code, value)
        assert reason is not None, (code, value)


def test_junk_is_configurable_per_type() -> None:
    book = TypeBook.build(
        {"device_id": {"blocked_values": ["02:00:00:00:00:00"], "blocked_patterns": ["^IDFA-0+$"]}}
    )
    assert book.check("device_id", "02:00:00:00:00:00")[1] == "blocked-value"
    assert book.check("device_id", "IDFA-0000")[1] == "blocked-pattern"
    assert book.check("wechat_openid", "02:00:00:00:00:00")[1] is None  # other types unaffected
    assert book.check("phone", "11111111111")[1] == "blocked-pattern"  # default: one digit repeated
    assert book.check("nonsense", "x")[1] == "unknown-type"
    disabled = TypeBook.build({"email": {"enabled": False}})
    assert disabled.check("email", "a@b.cn")[1] == "unknown-type"


def test_normalisation_matches_member_records() -> None:
    book = TypeBook.build()
    for raw in ("+86 138-0013-8000", "008613800138000", "13800138000"):
        normalised, reason = book.check("phone", raw)
        assert reason is None
        assert normalised == "13800138000"
        assert blind_index("phone", normalised) == pii.blind_index("phone", "13800138000")
    assert book.check("email", "  Wang@Example.CN ")[0] == "wang@example.cn"
    assert to_e164("13800138000") == "+8613800138000"
    assert display(book, "phone", "13800138000", show_pii=True) == "+8613800138000"
    assert display(book, "phone", "13800138000", show_pii=False) == "138****8000"
    assert display(book, "member_number", "AL0001", show_pii=False) == "AL0001"


def test_defaults_and_overrides_of_limits_and_priority() -> None:
    book = TypeBook.build()
    assert (book.limit("member_number"), book.limit("wechat_unionid"), book.limit("phone")) == (1, 1, 2)
    assert book.limit("device_id") == 10
    assert [t.code for t in book.ordered()][:3] == ["member_number", "wechat_unionid", "user_id"]
    custom = TypeBook.build(
        {"device_id": {"max_per_person": 3}, "tmall_id": {"priority": 9, "max_per_person": 1}}
    )
    assert custom.limit("device_id") == 3
    assert custom.get("tmall_id") is not None and custom.limit("tmall_id") == 1


# -- engine ----------------------------------------------------------------------------------------


def test_factorize_strings_like_a_dictionary() -> None:
    left = np.array(["phone:1", "device:é", "phone:1", "email:x@y"], dtype="U")
    right = np.array([b"device:\xc3\xa9".decode(), "phone:2", "email:x@y", "phone:1"], dtype="U")
    (a, b), n = graph.factorize(left, right)
    keys = [*left.tolist(), *right.tolist()]
    codes = [*a.tolist(), *b.tolist()]
    mapping: dict[str, int] = {}
    for k, c in zip(keys, codes, strict=True):
        assert mapping.setdefault(k, c) == c
    assert n == len(set(keys)) == len(set(codes))


def test_factorize_falls_back_when_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    real = graph._hashes

    def colliding(columns: list) -> tuple:
        first, check = real(columns)
        return np.zeros_like(first), check  # every key shares the first hash

    monkeypatch.setattr(graph, "_hashes", colliding)
    (a, b), n = graph.factorize(np.array([b"aaaa", b"bbbb"]), np.array([b"aaaa", b"cccc"]))
    assert n == 3 and a[0] == b[0] and len({a[1], b[1], a[0]}) == 3


def test_keys_hash_alike_in_arrays_of_any_width() -> None:
    narrow = np.array([b"device_id:d1", b"phone:13800138000"], dtype="S17")
    wide = np.array([b"phone:13800138000", b"device_id:d1", b"x" * 40], dtype="S40")
    (a, b), n = graph.factorize(narrow, wide)
    assert a.tolist() == [b[1], b[0]] and n == 3
    unicode_ = np.array(["电话:13800138000", "电话:13800138001"])
    (codes,), m = graph.factorize(unicode_)
    assert m == 2 and codes[0] != codes[1]


def _minter(start: int = 100):  # type: ignore[no-untyped-def]
    state = [start]

    def mint(k: int) -> graph.I64:
        out = np.arange(state[0], state[0] + k, dtype=np.int64)
        state[0] += k
        return out

    return mint


def test_merge_keeps_the_oldest_oneid_and_split_gives_back_the_previous_one() -> None:
    # nodes 0..3 in age order; 0-1 were OneID 3, 2-3 (younger) were OneID 5; a link 1-2 joins them
    current = np.array([3, 3, 5, 5])
    first = np.array([3, 3, 5, 5])
    count, labels = graph.components(np.array([0, 1, 2]), np.array([1, 2, 3]), 4)
    merged = graph.assign(labels, count, current, first, _minter())
    assert merged.oneid.tolist() == [3, 3, 3, 3]
    assert merged.merges == [(3, [5])] and merged.retired == [5]
    # removing 1-2 splits it again: the part holding the oldest node (0) keeps 3, the other part
    # takes back its own first OneID 5 (retired, so free)
    count, labels = graph.components(np.array([0, 2]), np.array([1, 3]), 4)
    split = graph.assign(labels, count, merged.oneid, first, _minter())
    assert split.oneid.tolist() == [3, 3, 5, 5]
    assert split.splits == [(3, [5])] and split.revived.tolist() == [5]
    # with 5 in use elsewhere, a new OneID is minted instead
    again = graph.assign(labels, count, merged.oneid, first, _minter(), active=np.array([3, 5]))
    assert again.oneid.tolist() == [3, 3, 100, 100] and again.minted.tolist() == [100]


def test_over_limit_finds_components_holding_too_many() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    types = np.array([0, 0, 1, 0, 1])
    assert graph.over_limit(labels, 2, types, np.array([1, -1])).tolist() == [0]
    assert graph.over_limit(labels, 2, types, np.array([2, -1])).tolist() == []


edges = st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(first_edges=edges, second_edges=edges)
def test_assignment_is_a_fixpoint_and_follows_components(first_edges: list, second_edges: list) -> None:
    n = 30
    mint = _minter()

    def run(es: list, current: graph.I64, first: graph.I64) -> graph.Assignment:
        left = np.array([e[0] for e in es], dtype=np.int64)
        right = np.array([e[1] for e in es], dtype=np.int64)
        count, labels = graph.components(left, right, n)
        result = graph.assign(labels, count, current, first, mint)
        # same component ⇔ same OneID
        assert len(set(result.oneid.tolist())) == count
        for a, b in es:
            assert result.oneid[a] == result.oneid[b]
        return result

    one = run(first_edges, np.full(n, -1), np.full(n, -1))
    first = one.oneid.copy()
    again = run(first_edges, one.oneid, first)
    assert np.array_equal(again.oneid, one.oneid) and not again.merges and not again.splits
    two = run(second_edges, one.oneid, first)
    # every OneID kept goes to the component holding its oldest identifier
    for oneid in set(one.oneid.tolist()) & set(two.oneid.tolist()):
        oldest = int(np.flatnonzero(one.oneid == oneid)[0])
        if oneid not in two.revived.tolist():
            assert two.oneid[oldest] == oneid
