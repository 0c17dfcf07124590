"""Request and response shapes for API keys, console users and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "POS sync", "scopes": ["orders:write", "members:read"]}]},
    )
    name: str = Field(min_length=1, max_length=120)
    scopes: list[str] = Field(min_length=1, max_length=30)
    rate_limit: str | None = Field(default=None, max_length=32, examples=["1200/minute"])
    platform: bool = Field(default=False, description="Platform key (platform principals only)")


class ApiKeyOut(BaseModel):
    id: int
    brand_id: int | None
    name: str
    prefix: str
    scopes: list[str]
    rate_limit: str | None
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyOut):
    secret: str = Field(description="Shown once; only a hash is stored")


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "username": "zhang.wei",
                    "password": "Huiyuan-2026!",
                    "role": "operator",
                    "display_name": "张伟（华东区运营）",
                    "locale": "zh",
                }
            ]
        },
    )
    username: str = Field(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=200)
    role: str = Field(examples=["operator"])
    display_name: str | None = Field(default=None, max_length=120)
    locale: str = Field(default="zh", pattern="^(zh|en)$")
    platform: bool = Field(default=False, description="Platform user (no brand)")


class UserOut(BaseModel):
    id: int
    brand_id: int | None
    username: str
    display_name: str
    role: str
    active: bool
    locale: str
    last_login_at: datetime | None


class AuditOut(BaseModel):
    id: int
    brand_id: int | None
    at: datetime
    actor_kind: str
    actor_name: str
    action: str
    entity_type: str
    entity_id: str
    changes: dict[str, Any]
    request_id: str | None
