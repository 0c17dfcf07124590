"""The OpenAPI document gives a request example for every operation that takes a body: on the media
type, or on the body's schema (followed through ``$ref``, ``anyOf`` and ``allOf``)."""

from __future__ import annotations

from typing import Any

import pytest

from huiyuan.app import create_app


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app().openapi()
    return document


def _has_example(schema: dict[str, Any] | None, components: dict[str, Any], depth: int = 0) -> bool:
    if not schema or depth > 4:
        return False
    if "example" in schema or "examples" in schema:
        return True
    if "$ref" in schema:
        return _has_example(components.get(schema["$ref"].rsplit("/", 1)[-1]), components, depth + 1)
    parts = [s for s in schema.get("anyOf", []) + schema.get("allOf", []) if s.get("type") != "null"]
    return bool(parts) and all(_has_example(s, components, depth + 1) for s in parts)


def _bodies_without_example(spec: dict[str, Any]) -> list[str]:
    components = spec.get("components", {}).get("schemas", {})
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if not body:
                continue
            media = body.get("content", {}).values()
            if not any(
                "example" in m or "examples" in m or _has_example(m.get("schema"), components) for m in media
            ):
                missing.append(f"{method.upper()} {path}")
    return missing


def test_every_request_body_has_an_example(spec: dict[str, Any]) -> None:
    assert _bodies_without_example(spec) == []


def test_the_check_sees_a_missing_example() -> None:
    spec = {
        "paths": {
            "/a": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/x/A"}}}}}},
            "/b": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/x/B"}}}}}},
            "/c": {"post": {"requestBody": {"content": {"multipart/form-data": {"example": {"file": "x"}}}}}},
            "/d": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"anyOf": [{"$ref": "#/x/A"}, {"type": "null"}]}}
                        }
                    }
                }
            },
        },
        "components": {"schemas": {"A": {"type": "object"}, "B": {"type": "object", "examples": [{}]}}},
    }
    assert _bodies_without_example(spec) == ["POST /a", "POST /d"]


def test_tracking_examples_are_accepted_by_the_spec_parser(spec: dict[str, Any]) -> None:
    """The tracking API's examples are real messages: they pass the parser and the row preparation."""
    from datetime import UTC, datetime

    import orjson

    from huiyuan.events import spec as tracking
    from huiyuan.events.plan import EMPTY_PLAN

    for kind in ("identify", "track", "page", "screen", "group", "alias", "batch"):
        media = spec["paths"][f"/v1/{kind}"]["post"]["requestBody"]["content"]["application/json"]
        raw = orjson.dumps(media["example"])
        body, size = tracking.decode_body(raw)
        envelope = tracking.envelope(body, kind, body_bytes=size)
        prepared = tracking.Preparer(
            brand_id=1, source_id=1, plan=EMPTY_PLAN, dialect="sqlite", received_at=datetime.now(UTC)
        ).add(envelope)
        assert prepared.quarantined == [], kind
        assert len(prepared.events) == len(envelope.messages) >= 1
