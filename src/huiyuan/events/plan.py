"""The tracking plan as code: property specs, a compiled plan per brand, and the check of one event's
properties against it. Pure (no database): ``events.service`` loads definitions and caches the
compiled plan by the brand's plan token.

A violation is a small dict — ``{"property": "price", "rule": "type", "message": "…"}`` — where the
rules are ``required``, ``type``, ``enum``, ``unplanned-property`` (the definition allows no
additional properties), ``deprecated`` (the event's newest version is deprecated) and
``unplanned-event`` (no definition, and the brand counts that as a violation). ``property`` is ""
for rules about the whole event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PROPERTY_TYPES = ("string", "number", "integer", "boolean", "datetime", "array", "object")

Violation = dict[str, Any]


def _is_string(v: Any) -> bool:
    return isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_integer(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _is_boolean(v: Any) -> bool:
    return isinstance(v, bool)


def _is_datetime(v: Any) -> bool:
    if not isinstance(v, str) or len(v) < 10:
        return False
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _is_array(v: Any) -> bool:
    return isinstance(v, list)


def _is_object(v: Any) -> bool:
    return isinstance(v, dict)


CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": _is_string,
    "number": _is_number,
    "integer": _is_integer,
    "boolean": _is_boolean,
    "datetime": _is_datetime,
    "array": _is_array,
    "object": _is_object,
}


def json_type(value: Any) -> str:
    """The plan type a JSON value looks like (``datetime`` for ISO 8601 strings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "datetime" if _is_datetime(value) and "T" in value else "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True)
class CompiledProperty:
    name: str
    type: str
    check: Callable[[Any], bool]
    required: bool
    enum: frozenset[Any] | None


# The classes a conforming value of a type has exactly (``bool`` is not an ``int`` here). Types
# missing here (``datetime``, an integral float for ``integer``) and enums need ``check``.
_PLAIN_CLASSES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
    "array": frozenset({list}),
    "object": frozenset({dict}),
}
_NOTHING: frozenset[type] = frozenset()


@dataclass(frozen=True)
class CompiledEvent:
    kind: str
    name: str
    version: int
    deprecated: bool
    allow_additional: bool
    properties: tuple[CompiledProperty, ...]
    known: frozenset[str]
    # (name, classes that surely conform, required) per property: ``conforms`` answers most events
    # with a class lookup per property; whatever it cannot vouch for goes to ``check``.
    plain: tuple[tuple[str, frozenset[type], bool], ...] = ()

    def conforms(self, properties: dict[str, Any]) -> bool:
        """True when ``check`` would find nothing; False when it might (then ask ``check``)."""
        if self.deprecated:
            return False
        get = properties.get
        for name, classes, required in self.plain:
            value = get(name)
            if value is None:
                if required:
                    return False
            elif value.__class__ not in classes:
                return False
        return self.allow_additional or properties.keys() <= self.known


@dataclass(frozen=True)
class CompiledPlan:
    """A brand's plan ready to check events: the newest version of each (kind, name)."""

    events: dict[tuple[str, str], CompiledEvent] = field(default_factory=dict)
    violation_mode: str = "flag"
    unplanned_policy: str = "allow"

    def definition(self, kind: str, name: str | None) -> CompiledEvent | None:
        if name is None:
            return None
        return self.events.get((kind, name))


EMPTY_PLAN = CompiledPlan()


def _enum_key(value: Any) -> Any:
    # 1 == True in Python; keep booleans apart from numbers in enum sets.
    return ("b", value) if isinstance(value, bool) else value


def compile_event(
    *,
    kind: str,
    name: str,
    version: int,
    status: str,
    allow_additional: bool,
    properties: Iterable[dict[str, Any]],
) -> CompiledEvent:
    compiled = []
    for spec in properties:
        enum = spec.get("enum")
        compiled.append(
            CompiledProperty(
                name=spec["name"],
                type=spec["type"],
                check=CHECKS[spec["type"]],
                required=bool(spec.get("required", False)),
                enum=frozenset(_enum_key(v) for v in enum) if enum else None,
            )
        )
    return CompiledEvent(
        kind=kind,
        name=name,
        version=version,
        deprecated=status == "deprecated",
        allow_additional=allow_additional,
        properties=tuple(compiled),
        known=frozenset(p.name for p in compiled),
        plain=tuple(
            (p.name, _NOTHING if p.enum is not None else _PLAIN_CLASSES.get(p.type, _NOTHING), p.required)
            for p in compiled
        ),
    )


def check(definition: CompiledEvent, properties: dict[str, Any]) -> list[Violation]:
    """Every way ``properties`` break ``definition`` (empty when the event conforms)."""
    if definition.conforms(properties):
        return []
    out: list[Violation] = []
    if definition.deprecated:
        out.append(
            {
                "property": "",
                "rule": "deprecated",
                "message": f"'{definition.name}' v{definition.version} is deprecated",
            }
        )
    for prop in definition.properties:
        value = properties.get(prop.name)
        if value is None:
            if prop.required:
                out.append(
                    {"property": prop.name, "rule": "required", "message": "required property missing"}
                )
            continue
        if not prop.check(value):
            out.append(
                {
                    "property": prop.name,
                    "rule": "type",
                    "message": f"expected {prop.type}, got {json_type(value)}",
                }
            )
            continue
        if prop.enum is not None:
            try:
                allowed = _enum_key(value) in prop.enum
            except TypeError:  # a list or object is never one of the enum values
                allowed = False
            if not allowed:
                out.append(
                    {"property": prop.name, "rule": "enum", "message": "not one of the allowed values"}
                )
    if not definition.allow_additional:
        for name in properties:
            if name not in definition.known:
                out.append(
                    {"property": name, "rule": "unplanned-property", "message": "property not in the plan"}
                )
    return out


def unplanned_violation(name: str) -> Violation:
    return {"property": "", "rule": "unplanned-event", "message": f"'{name}' is not in the tracking plan"}


def infer_properties(sample: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Property specs guessed from one event's properties: every property optional, typed by its value
    (``null`` values become strings)."""
    out = []
    for name, value in sorted((sample or {}).items()):
        kind = json_type(value)
        out.append({"name": name, "type": kind if kind in PROPERTY_TYPES else "string", "required": False})
    return out
