"""Keyset (cursor) pagination shared by every list endpoint: ``{"items": [...], "next_cursor": ...}``.

Cursors are opaque base64 of the last seen id, so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from huiyuan.kit.errors import ValidationFailed, field_error

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    limit: int


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("The cursor is not valid.", errors=[field_error("cursor", "malformed cursor")])


def check_limit(limit: int, maximum: int) -> int:
    if limit < 1 or limit > maximum:
        raise ValidationFailed(
            f"limit must be between 1 and {maximum}.",
            errors=[field_error("limit", f"must be between 1 and {maximum}", "out-of-range")],
        )
    return limit


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_HasId)


def cursor_page(rows: Sequence[R], limit: int, items: Callable[[Sequence[R]], list[Any]]) -> Page[Any]:
    """A page from ``limit + 1`` rows fetched in id order: the extra row only says there is more."""
    more = len(rows) > limit
    shown = rows[:limit]
    return Page[Any](
        items=items(shown), limit=limit, next_cursor=encode_cursor(shown[-1].id) if more else None
    )
