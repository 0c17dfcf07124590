"""The batch OneID engine: identifier keys → dense integers, connected components, and stable OneIDs.
Pure numpy/scipy; no database (``identity.recompute`` feeds it from the tables).

Three steps, each vectorised:

1. ``factorize`` maps identifier keys (numpy string arrays, e.g. ``b"phone:<bidx>"``, or integer
   node ids) to dense integers ``0..n-1``. Strings are hashed over their bytes read as 64-bit words
   in place (no Python loop per key, no copy; zero padding hashes to nothing, so arrays of different
   widths mix), the hashes get dense codes from a vectorised open-addressing table (no sort), and a
   second, independent 64-bit hash must agree within every code, so two different keys sharing a
   first hash are detected (and then mapped exactly by ``np.unique`` on the strings). Codes are
   numbered in order of first appearance, which keeps the input's locality for step 2.
2. ``components`` runs ``scipy.sparse.csgraph.connected_components`` on the undirected link graph.
3. ``assign`` gives every component a OneID so that OneIDs are stable: each current OneID goes to
   the component holding its oldest identifier, a component keeps the oldest (smallest) OneID it
   won, and a component that won none takes back the oldest of its identifiers' own first OneIDs
   that is retired (an un-merge restoring what a merge retired), else gets a new one. ``changes``
   then lists the merges and splits between the old and the new assignment.

The same ``assign`` decides real-time splits (``identity.linking``), so a batch recompute over a
state built in real time changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

I64 = NDArray[np.int64]
NONE = -1
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_S1 = np.uint64(29)
_S2 = np.uint64(32)


def _columns(keys: NDArray[np.generic]) -> list[NDArray[np.uint64]]:
    """The keys' bytes as 64-bit words, one array per word position, without copying the keys: full
    words are strided (possibly unaligned) views into the array's buffer; the last, partial word is
    assembled from its bytes with zero padding. Word ``j`` of a key is the same whatever the width of
    the array holding it."""
    if keys.dtype.kind not in ("S", "U"):
        raise TypeError(f"expected a numpy string array, got {keys.dtype}")
    keys = np.ascontiguousarray(keys)
    size, n = keys.dtype.itemsize, len(keys)
    raw = keys.view(np.uint8).reshape(n, size)
    columns = [
        np.ndarray((n,), dtype=np.uint64, buffer=raw, offset=8 * j, strides=(size,)) for j in range(size // 8)
    ]
    if size % 8:
        tail = np.zeros(n, dtype=np.uint64)
        for b in range(size % 8):
            tail |= raw[:, (size // 8) * 8 + b].astype(np.uint64) << np.uint64(8 * b)
        columns.append(tail)
    return columns


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """A 64-bit finaliser (xorshift-multiply, in place); ``_mix(0) == 0``."""
    with np.errstate(over="ignore"):
        x ^= x >> _S2
        x *= _M1
        x ^= x >> _S1
        x *= _M2
        x ^= x >> _S2
    return x


def _hashes(columns: list[NDArray[np.uint64]]) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Two independent 64-bit hashes of every key: ``Σ mix(word_j × K_j)`` and ``Σ word_j × C_j``.
    Zero words add nothing to either, so a key hashes the same in arrays of any width."""
    n = len(columns[0]) if columns else 0
    first = np.zeros(n, dtype=np.uint64)
    check = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, column in enumerate(columns):
            word = np.ascontiguousarray(column)
            first += _mix(word * np.uint64((0x243F6A8885A308D3 * (2 * j + 1)) % 2**64 | 1))
            check += word * np.uint64((0x13198A2E03707344 * (2 * j + 3) + 1) % 2**64 | 1)
    return first, check


def _sorted_unique(values: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Distinct values (sorted) and how often each occurs: a sort, which beats ``np.unique``'s
    hash path on millions of integers."""
    ordered = np.sort(values)
    if not len(ordered):
        return ordered, np.empty(0, dtype=np.int64)
    head = np.empty(len(ordered), dtype=bool)
    head[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def _dense(values: NDArray[np.uint64]) -> tuple[I64, int]:
    """Dense codes of 64-bit values through a vectorised open-addressing table (linear probing,
    load ≤ 3/4): each round, keys whose slot is free claim it, keys meeting their own value there
    are placed, the others probe on. No sort: a few passes over the keys."""
    n = len(values)
    if n == 0:
        return np.empty(0, dtype=np.int64), 0
    size = 1 << max(4, int(n + n // 3).bit_length())
    # The lowest bit is set so 0 can mark a free slot; the check hash catches the keys this joins.
    keys = values | np.uint64(1)
    table = np.zeros(size, dtype=np.uint64)
    slot = (keys & np.uint64(size - 1)).astype(np.intp)
    table[slot] = keys  # first round: every slot is free, one key per slot wins
    pending = np.flatnonzero(table[slot] != keys)
    while len(pending):
        s = (slot[pending] + 1) & (size - 1)
        slot[pending] = s
        k = keys[pending]
        free = table[s] == 0
        table[s[free]] = k[free]
        pending = pending[table[s] != k]
    used = np.flatnonzero(table)
    table[used] = np.arange(len(used), dtype=np.uint64)  # the table now holds each slot's code
    return table[slot].astype(np.int64), len(used)


def factorize(*arrays: NDArray[np.generic]) -> tuple[list[I64], int]:
    """Dense integer codes for the keys of every array (equal keys ⇒ equal codes), and their count."""
    sizes = [len(a) for a in arrays]
    if all(a.dtype.kind in ("i", "u") for a in arrays):
        uniq, inverse = np.unique(np.concatenate(arrays), return_inverse=True)
        codes, n = inverse.astype(np.int64, copy=False).reshape(-1), len(uniq)
    else:
        if len({a.dtype.kind for a in arrays}) != 1:
            raise TypeError("mix of bytes and str keys: encode them alike")
        hashed = [_hashes(_columns(a)) for a in arrays]
        first = np.concatenate([h[0] for h in hashed])
        check = np.concatenate([h[1] for h in hashed])
        codes, n = _dense(first)
        head = np.empty(n, dtype=np.int64)  # each code's first position
        head[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        first_of = head[codes]  # for every key, the position where it first appears
        if not np.array_equal(check[first_of], check):
            codes, n = _dense_strings(arrays)  # a 64-bit collision: map the strings themselves
        else:
            codes = _by_first_appearance(first_of, head)
    out: list[I64] = []
    start = 0
    for size in sizes:
        out.append(codes[start : start + size])
        start += size
    return out, n


def _by_first_appearance(first_of: I64, head: I64) -> I64:
    """Codes numbered in order of first appearance (no sort). Hash order scatters neighbours across
    memory; input order keeps the locality the links came with, on which the sparse graph build and
    the component search run about twice as fast — and "first seen" becomes the age order."""
    is_first = np.zeros(len(first_of), dtype=np.int64)
    is_first[head] = 1
    position_code = np.cumsum(is_first) - 1
    return position_code[first_of]


def _dense_strings(arrays: tuple[NDArray[np.generic], ...]) -> tuple[I64, int]:
    kind = arrays[0].dtype.kind
    width = max(a.dtype.itemsize // (4 if kind == "U" else 1) for a in arrays)
    keys = np.concatenate([a.astype(f"{kind}{width}") for a in arrays])
    uniq, inverse = np.unique(keys, return_inverse=True)
    return inverse.astype(np.int64, copy=False).reshape(-1), len(uniq)


def components(left: I64, right: I64, n: int) -> tuple[int, I64]:
    """``(count, label per node)`` of the undirected graph with ``n`` nodes and the given edges."""
    if n == 0:
        return 0, np.empty(0, dtype=np.int64)
    data = np.ones(len(left), dtype=np.bool_)
    graph = csr_matrix((data, (left.astype(np.int32), right.astype(np.int32))), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels.astype(np.int64, copy=False)


@dataclass
class Assignment:
    """New OneID per node, and what changed against the current OneIDs."""

    oneid: I64
    minted: I64  # OneIDs handed out by ``mint`` in this assignment
    revived: I64  # retired OneIDs given back to a split-off part
    merges: list[tuple[int, list[int]]] = field(default_factory=list)  # (kept, [absorbed …])
    splits: list[tuple[int, list[int]]] = field(default_factory=list)  # (split OneID, [parts' …])

    @property
    def retired(self) -> list[int]:
        return sorted({x for _, absorbed in self.merges for x in absorbed})


def _winners(keys: I64, labels: I64, nodes: I64) -> tuple[I64, I64]:
    """For every distinct key among ``nodes`` (in age order), the label of its first node."""
    order = np.argsort(keys, kind="stable")  # stable: within a key, the oldest node comes first
    k = keys[order]
    head = np.ones(len(k), dtype=bool)
    head[1:] = k[1:] != k[:-1]
    return k[head], labels[nodes[order][head]]


def _min_per_label(values: I64, labels: I64, count: int) -> I64:
    out = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    if len(values):
        np.minimum.at(out, labels, values)
    return out


def assign(
    labels: I64,
    count: int,
    current: I64,
    first: I64,
    mint: Callable[[int], I64],
    *,
    active: I64 | None = None,
) -> Assignment:
    """Stable OneIDs for ``count`` components; nodes are indexed in age order (oldest first).

    ``current``/``first``: each node's OneID now and the OneID it was first given (``NONE`` if
    none). ``active``: OneIDs in use anywhere (default: the distinct ``current`` values); only
    others may be revived. ``mint(k)`` returns ``k`` fresh OneIDs (increasing).
    """
    big = np.iinfo(np.int64).max
    nodes = np.arange(len(labels), dtype=np.int64)
    has = current != NONE
    won_ids, won_labels = _winners(current[has], labels, nodes[has])
    keep = _min_per_label(won_ids, won_labels, count)

    in_use = _sorted_unique(current[has] if active is None else active)[0]
    open_comp = keep[labels] == big
    candidate = open_comp & (first != NONE) & ~np.isin(first, in_use)
    revived_ids, revived_labels = _winners(first[candidate], labels, nodes[candidate])
    revive = _min_per_label(revived_ids, revived_labels, count)
    take = (keep == big) & (revive != big)
    keep[take] = revive[take]
    revived = np.sort(keep[take])

    fresh = np.flatnonzero(keep == big)
    minted = np.asarray(mint(len(fresh)), dtype=np.int64) if len(fresh) else np.empty(0, np.int64)
    keep[fresh] = minted
    oneid = keep[labels]
    result = Assignment(oneid=oneid, minted=minted, revived=revived)
    _record_changes(result, current[has], oneid[has])
    return result


def _record_changes(result: Assignment, before: I64, after: I64) -> None:
    """Merges (a new OneID fed by several current ones) and splits (a current one feeding several)."""
    if not len(before):
        return
    lo = int(min(before.min(), after.min()))
    span = int(max(before.max(), after.max())) - lo + 1
    if span < 2**31:  # each distinct (before, after) pair as one int64
        joined = _sorted_unique((before - lo) * span + (after - lo))[0]
        pairs = np.stack([joined // span + lo, joined % span + lo], axis=1)
    else:
        pairs = np.unique(np.stack([before, after], axis=1), axis=0)
    if not (pairs[:, 0] != pairs[:, 1]).any():
        return
    afters, a_counts = _sorted_unique(pairs[:, 1])
    befores, b_counts = _sorted_unique(pairs[:, 0])
    merged = np.isin(pairs[:, 1], afters[a_counts > 1])
    split = np.isin(pairs[:, 0], befores[b_counts > 1])
    by_after: dict[int, set[int]] = {}
    for b, a in pairs[merged].tolist():
        by_after.setdefault(a, set()).add(b)
    by_before: dict[int, set[int]] = {}
    for b, a in pairs[split].tolist():
        by_before.setdefault(b, set()).add(a)
    result.merges.extend((a, sorted(src - {a})) for a, src in sorted(by_after.items()))
    result.splits.extend((b, sorted(dst - {b})) for b, dst in sorted(by_before.items()))


def over_limit(labels: I64, count: int, types: I64, limits: I64) -> I64:
    """Labels of components holding more identifiers of some type than its limit (``-1``: none).

    ``types``: a type code per node (``0..len(limits)-1``); ``limits``: the limit per type code.
    """
    ntypes = len(limits)
    if not len(labels) or not ntypes:
        return np.empty(0, dtype=np.int64)
    counts = np.bincount(labels * ntypes + types, minlength=count * ntypes).reshape(count, ntypes)
    bounded = limits >= 0
    bad = (counts[:, bounded] > limits[bounded]).any(axis=1)
    return np.flatnonzero(bad).astype(np.int64)
