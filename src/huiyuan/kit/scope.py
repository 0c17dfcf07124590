"""Who is acting and which rows they may touch.

A ``Principal`` is resolved once per request (console session, API key, member token) or job, and its
``Scope`` is attached to the database session. The tenancy filter in ``kit.db`` reads it from there,
so no repository or endpoint has to remember to filter by brand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from huiyuan.kit.errors import BrandRequired, PermissionDenied

PrincipalKind = Literal["user", "api_key", "member", "system"]


@dataclass(frozen=True)
class Scope:
    """``brand_id=None`` means every brand (platform scope); otherwise rows of that brand only."""

    brand_id: int | None
    platform: bool = False

    @property
    def is_platform_wide(self) -> bool:
        return self.brand_id is None

    def require_brand(self) -> int:
        if self.brand_id is None:
            raise BrandRequired()
        return self.brand_id


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: int | None
    name: str
    scope: Scope
    permissions: frozenset[str] = field(default_factory=frozenset)
    member_id: int | None = None
    role: str | None = None

    def has(self, permission: str) -> bool:
        return "*" in self.permissions or permission in self.permissions

    def require(self, permission: str) -> None:
        if not self.has(permission):
            raise PermissionDenied(detail=f"This action needs the '{permission}' permission.")

    def for_brand(self, brand_id: int) -> Principal:
        """A platform principal narrowed to one brand (brand switcher, ``X-Huiyuan-Brand``)."""
        return Principal(
            kind=self.kind,
            id=self.id,
            name=self.name,
            scope=Scope(brand_id=brand_id, platform=self.scope.platform),
            permissions=self.permissions,
            member_id=self.member_id,
            role=self.role,
        )

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Principal(
    kind="system",
    id=None,
    name="system",
    scope=Scope(brand_id=None, platform=True),
    permissions=frozenset({"*"}),
)


def system_for_brand(brand_id: int) -> Principal:
    return SYSTEM.for_brand(brand_id)
