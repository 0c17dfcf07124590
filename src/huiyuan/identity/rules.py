"""Identifier types of OneID and what each allows: priority, normalisation, junk values and how many
of a kind one person may hold. Pure: no database, no session.

Every brand starts from ``DEFAULT_TYPES`` and may override any field of a type (or add a type) in
its OneID settings (``identity.service.update_settings``). The priority orders identifiers (1 is
strongest): it picks the hub of an identify call, the identifier shown first, and survivorship's
trust when two identifiers of one person disagree. Per-type limits stop bad data (a shared device,
a placeholder phone) from gluing thousands of people together: a link that would give a person more
identifiers of a type than its limit is recorded as a conflict instead of merging.

Normalisation is shared with the member records (``kit.pii.normalise``), so the blind index of a
phone or e-mail here is the same as in ``member_identifiers`` and orders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from huiyuan.kit import pii

# Values no system should ever send as an identifier, whatever the type (compared after
# normalisation, case-insensitively). A brand adds its own per type.
COMMON_JUNK = (
    "",
    "null",
    "none",
    "nil",
    "undefined",
    "nan",
    "0",
    "-1",
    "unknown",
    "anonymous",
    "test",
    "n/a",
)
# Only zeros and dashes ("0000", "0-0-0", "-"): placeholders, never real values.
COMMON_JUNK_PATTERNS = (r"^[0-]*$",)

NORMALISERS = ("phone_cn", "email", "lower", "strip")
_PHONE = re.compile(r"^\+?\d{5,15}$")


@dataclass(frozen=True)
class IdentifierType:
    """How one kind of identifier behaves in a brand's identity graph."""

    code: str
    label: str
    priority: int
    max_per_person: int | None  # None: no limit
    normaliser: str = "strip"
    blocked_values: tuple[str, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    pii: bool = True  # values are shown masked unless the caller holds members:pii
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "label": self.label,
            "priority": self.priority,
            "max_per_person": self.max_per_person,
            "normaliser": self.normaliser,
            "blocked_values": list(self.blocked_values),
            "blocked_patterns": list(self.blocked_patterns),
            "pii": self.pii,
            "enabled": self.enabled,
        }


DEFAULT_TYPES: tuple[IdentifierType, ...] = (
    IdentifierType("member_number", "Member number", 1, 1, "strip", pii=False),
    IdentifierType("wechat_unionid", "WeChat UnionID", 2, 1),
    IdentifierType("user_id", "App user id (Segment userId)", 3, 1),
    IdentifierType("phone", "Mobile phone", 4, 2, "phone_cn", blocked_patterns=(r"^(\d)\1{10}$",)),
    IdentifierType("email", "E-mail", 5, 3, "email"),
    IdentifierType("card_number", "Card number", 6, 3),
    IdentifierType("alipay_id", "Alipay user id", 7, 1),
    IdentifierType("wechat_openid", "WeChat OpenID", 8, 5),
    IdentifierType("platform_id", "E-commerce platform id", 9, 10),
    IdentifierType("external_id", "External system id", 10, 10),
    IdentifierType("device_id", "Device id", 11, 10),
    IdentifierType("anonymous_id", "Anonymous id (Segment anonymousId)", 12, 50, pii=False),
)
DEFAULT_CODES = tuple(t.code for t in DEFAULT_TYPES)


@dataclass(frozen=True)
class TypeBook:
    """The identifier types in force for one brand, with compiled junk patterns."""

    types: Mapping[str, IdentifierType]
    _patterns: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> TypeBook:
        """Defaults with a brand's overrides (``{code: {field: value}}``) applied on top."""
        types = {t.code: t for t in DEFAULT_TYPES}
        for code, changes in (overrides or {}).items():
            base = types.get(code) or IdentifierType(code, code, 100, None)
            clean = {k: v for k, v in changes.items() if k in IdentifierType.__dataclass_fields__}
            for key in ("blocked_values", "blocked_patterns"):
                if key in clean:
                    clean[key] = tuple(clean[key])
            clean.pop("code", None)
            types[code] = replace(base, **clean)
        patterns = {
            code: tuple(_compile(p) for p in (*COMMON_JUNK_PATTERNS, *t.blocked_patterns))
            for code, t in types.items()
        }
        return cls(types=types, _patterns=patterns)

    def get(self, code: str) -> IdentifierType | None:
        t = self.types.get(code)
        return t if t is not None and t.enabled else None

    def priority(self, code: str) -> int:
        t = self.types.get(code)
        return t.priority if t is not None else 1000

    def limit(self, code: str) -> int | None:
        t = self.types.get(code)
        return t.max_per_person if t is not None else None

    def ordered(self) -> list[IdentifierType]:
        return sorted(self.types.values(), key=lambda t: (t.priority, t.code))

    def normalise(self, code: str, value: str) -> str:
        t = self.types.get(code)
        return normalise(t.normaliser if t is not None else "strip", code, value)

    def junk_reason(self, code: str, value: str) -> str | None:
        """Why ``value`` (already normalised) may not be an identifier of type ``code``, or None."""
        t = self.types.get(code)
        if t is None or not t.enabled:
            return "unknown-type"
        folded = value.casefold()
        if folded in COMMON_JUNK or folded in {v.casefold() for v in t.blocked_values}:
            return "blocked-value"
        if any(p.search(value) for p in self._patterns.get(code, ())):
            return "blocked-pattern"
        if len(value) > 200:
            return "too-long"
        return None

    def check(self, code: str, value: str) -> tuple[str, str | None]:
        """``(normalised value, junk reason or None)``; the raw value is checked as well, so a
        normaliser cannot turn junk (``-1``) into something that looks real (``1``)."""
        normalised = self.normalise(code, value)
        reason = self.junk_reason(code, value.strip()) or self.junk_reason(code, normalised)
        t = self.types.get(code)
        if reason is None and t is not None and t.normaliser == "phone_cn" and not _PHONE.match(normalised):
            reason = "invalid-format"
        return normalised, reason


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def validate_pattern(pattern: str) -> str | None:
    """An error message if ``pattern`` is not a usable regular expression."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None


def normalise(normaliser: str, code: str, value: str) -> str:
    """The canonical form of a value; phone and e-mail exactly as member records store them."""
    value = value.strip()
    if normaliser == "phone_cn":
        return pii.normalise("phone", value)
    if normaliser == "email":
        return pii.normalise("email", value)
    if normaliser == "lower":
        return value.casefold()
    return value


def to_e164(phone: str) -> str:
    """A mainland mobile number as E.164 for display (``+8613800138000``); others unchanged."""
    digits = pii.normalise("phone", phone)
    if len(digits) == 11 and digits.startswith("1") and digits.isdigit():
        return "+86" + digits
    return digits


def blind_index(code: str, normalised: str) -> str:
    """The keyed hash shared with member records and orders (``kit.pii.blind_index``)."""
    kind = "phone" if code == "phone" else "email" if code == "email" else code
    return pii.blind_index(kind, normalised)


def display(book: TypeBook, code: str, normalised: str, *, show_pii: bool) -> str:
    """What a response shows: the value (phones as E.164) or its mask."""
    t = book.types.get(code)
    shown = to_e164(normalised) if code == "phone" else normalised
    if show_pii or (t is not None and not t.pii):
        return shown
    return pii.mask(code, normalised) or ""
