"""Request and response shapes of the webhooks API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPES_DOC = "Exact types ('order.paid'), prefix wildcards ('member.*') or '*' for everything"


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "url": "https://erp.example.com/hooks/huiyuan",
                    "event_types": ["order.paid", "member.*"],
                    "description": "ERP sync",
                }
            ]
        },
    )

    url: str = Field(min_length=8, max_length=500, description="http(s) URL on a public host")
    event_types: list[str] = Field(min_length=1, max_length=50, description=EVENT_TYPES_DOC)
    description: str | None = Field(default=None, max_length=200)


class WebhookUpdate(BaseModel):
    """Partial update: only the fields sent change."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"active": False}, {"event_types": ["order.*"]}]},
    )

    active: bool | None = None
    event_types: list[str] | None = Field(
        default=None, min_length=1, max_length=50, description=EVENT_TYPES_DOC
    )
    description: str | None = Field(default=None, max_length=200)


class WebhookOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "brand_id": 1,
                    "url": "https://erp.example.com/hooks/huiyuan",
                    "event_types": ["member.*", "order.paid"],
                    "active": True,
                    "description": "ERP sync",
                    "created_at": "2026-05-01T08:00:00Z",
                    "updated_at": "2026-05-01T08:00:00Z",
                }
            ]
        },
    )

    id: int
    brand_id: int
    url: str
    event_types: list[str]
    active: bool
    description: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="Signing secret, shown only in this response: verify X-Huiyuan-Signature with it",
        examples=["whsec_3q2+7w…"],
    )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 91,
                    "subscription_id": 3,
                    "event_id": 1207,
                    "status": "pending",
                    "attempts": 2,
                    "next_attempt_at": "2026-05-01T08:02:00Z",
                    "last_status_code": 500,
                    "last_error": "HTTP 500: upstream down",
                    "delivered_at": None,
                    "created_at": "2026-05-01T08:00:00Z",
                }
            ]
        },
    )

    id: int
    subscription_id: int
    event_id: int
    status: str = Field(description="pending, delivered or dead")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
