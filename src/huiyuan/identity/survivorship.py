"""Survivorship: which observed value of an attribute becomes the golden record of a OneID.

Rules, per attribute (a brand overrides any in its settings):

* ``most_recent`` — the value observed last;
* ``most_trusted`` — the value of the most trusted source (``source_trust`` order), the most recent
  among that source's values;
* ``first_non_empty`` — the value observed first;
* ``union`` — every distinct value (lists are flattened), in order of first observation.

Pure: takes observations as plain ``Seen`` values; loading and decrypting is ``service``'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RULES = ("most_recent", "most_trusted", "first_non_empty", "union")
DEFAULT_SOURCE_TRUST = (
    "manual",
    "member",
    "order",
    "import",
    "mapping",
    "identify",
    "alias",
    "probabilistic",
)
DEFAULT_RULES: dict[str, str] = {
    "name": "most_trusted",
    "gender": "most_trusted",
    "birthday": "most_trusted",
    "phone": "most_recent",
    "email": "most_recent",
    "province": "most_recent",
    "city": "most_recent",
    "address": "most_recent",
    "interests": "union",
    "channels": "union",
    "first_seen_channel": "first_non_empty",
}
FALLBACK_RULE = "most_recent"


@dataclass(frozen=True)
class Seen:
    attribute: str
    value: Any
    source: str
    first_seen_at: datetime
    observed_at: datetime
    node_id: int


@dataclass(frozen=True)
class Survivor:
    value: Any
    rule: str
    source: str | None
    observed_at: datetime | None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _trust(order: Sequence[str]) -> dict[str, int]:
    return {s: i for i, s in enumerate(order)}


def pick(rule: str, seen: Sequence[Seen], trust: Mapping[str, int]) -> Survivor | None:
    """The surviving value of one attribute under ``rule`` (None if nothing non-empty was seen)."""
    values = [s for s in seen if not _empty(s.value)]
    if not values:
        return None
    if rule == "union":
        out: list[Any] = []
        for s in sorted(values, key=lambda s: (s.first_seen_at, s.node_id)):
            for v in s.value if isinstance(s.value, list) else [s.value]:
                if v not in out:
                    out.append(v)
        last = max(values, key=lambda s: s.observed_at)
        return Survivor(out, rule, None, last.observed_at)
    if rule == "first_non_empty":
        chosen = min(values, key=lambda s: (s.first_seen_at, s.node_id))
    elif rule == "most_trusted":
        worst = len(trust)
        chosen = min(
            values, key=lambda s: (trust.get(s.source, worst), -s.observed_at.timestamp(), s.node_id)
        )
    else:
        chosen = max(values, key=lambda s: (s.observed_at, -s.node_id))
    return Survivor(chosen.value, rule, chosen.source, chosen.observed_at)


def golden_record(
    observations: Iterable[Seen],
    *,
    rules: Mapping[str, str] | None = None,
    source_trust: Sequence[str] = DEFAULT_SOURCE_TRUST,
) -> dict[str, Survivor]:
    """The surviving value of every attribute observed on a OneID's identifiers."""
    by_attribute: dict[str, list[Seen]] = {}
    for s in observations:
        by_attribute.setdefault(s.attribute, []).append(s)
    chosen_rules = {**DEFAULT_RULES, **(rules or {})}
    trust = _trust(source_trust)
    out: dict[str, Survivor] = {}
    for attribute in sorted(by_attribute):
        survivor = pick(chosen_rules.get(attribute, FALLBACK_RULE), by_attribute[attribute], trust)
        if survivor is not None:
            out[attribute] = survivor
    return out
