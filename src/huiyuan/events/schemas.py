"""Request and response shapes of the operator and system API of events (``/api/v1``).

The tracking API (``/v1/…``) has no pydantic models on purpose: it reads the Segment spec's plain
JSON on the hot path (``events.spec``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SourceKind = Literal["web", "app", "server", "pos"]
DedupKey = Literal["message_id", "message_id_and_timestamp"]
DEDUP_HELP = (
    "How a resend is known: `message_id` (the default) by its messageId whatever its timestamp; "
    "`message_id_and_timestamp` by its messageId and its own timestamp as the client sent it, which is "
    "how the Segment and RudderStack libraries resend, and keeps random message ids as cheap to store as "
    "ids that grow (docs/events.md, Exactly once)"
)
PropertyType = Literal["string", "number", "integer", "boolean", "datetime", "array", "object"]
DefinitionKind = Literal["track", "page", "screen"]


class SourceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "官网 web", "kind": "web"}]}
    )
    name: str = Field(min_length=1, max_length=120)
    kind: SourceKind
    rate_limit: str | None = Field(
        default=None,
        max_length=32,
        description="Messages per period (`limits` syntax)",
        examples=["2000/second"],
    )
    dedup: DedupKey = Field(default="message_id", description=DEDUP_HELP)


class SourceUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"rate_limit": "5000/second"},
                {"status": "disabled"},
                {"dedup": "message_id_and_timestamp"},
            ]
        },
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    rate_limit: str | None = Field(
        default=None, max_length=32, description="Empty string: back to the default"
    )
    status: Literal["active", "disabled"] | None = None
    dedup: DedupKey | None = Field(default=None, description=DEDUP_HELP)


class SourceOut(BaseModel):
    id: int
    brand_id: int
    name: str
    kind: str
    key_prefix: str
    rate_limit: str | None
    status: str
    dedup: str
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None
    last_event_at: datetime | None


class SourceIssued(SourceOut):
    write_key: str = Field(description="Shown once; only a hash is stored")


class PropertySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    type: PropertyType
    required: bool = False
    enum: list[str | int | float | bool] | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _enum_fits_type(self) -> PropertySpec:
        if self.enum is not None and self.type not in ("string", "number", "integer", "boolean"):
            raise ValueError("enum values are for string, number, integer and boolean properties")
        return self


class DefinitionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Product Viewed",
                    "properties": [
                        {"name": "sku", "type": "string", "required": True},
                        {"name": "price", "type": "number", "required": True},
                        {"name": "currency", "type": "string", "enum": ["CNY"]},
                    ],
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    kind: DefinitionKind = "track"
    description: str | None = Field(default=None, max_length=2000)
    properties: list[PropertySpec] = Field(default_factory=list, max_length=300)
    allow_additional: bool = Field(default=True, description="Properties not in the plan are allowed")


class RevisionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "description": "v2: the price is required, the channel is one of three",
                    "properties": [
                        {"name": "sku", "type": "string", "required": True},
                        {"name": "price", "type": "number", "required": True},
                        {"name": "channel", "type": "string", "enum": ["miniapp", "web", "pos"]},
                    ],
                    "allow_additional": False,
                }
            ]
        },
    )
    description: str | None = Field(default=None, max_length=2000)
    properties: list[PropertySpec] = Field(default_factory=list, max_length=300)
    allow_additional: bool = True


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "deprecated"}]})
    status: Literal["active", "deprecated"]


class DefinitionOut(BaseModel):
    id: int
    brand_id: int
    kind: str
    name: str
    version: int
    status: str
    description: str | None
    properties: list[dict[str, Any]]
    allow_additional: bool
    created_at: datetime
    created_by: str | None


class SettingsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"violation_mode": "quarantine", "unplanned_policy": "violation"}]},
    )
    violation_mode: Literal["flag", "quarantine"] | None = None
    unplanned_policy: Literal["allow", "violation"] | None = None


class SettingsOut(BaseModel):
    brand_id: int
    violation_mode: str
    unplanned_policy: str


class UnplannedOut(BaseModel):
    id: int
    kind: str
    name: str
    status: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    sample: dict[str, Any] | None
    definition_id: int | None


class ApproveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {
                    "description": "A coupon taken in the mini-program",
                    "properties": [
                        {"name": "template_code", "type": "string", "required": True},
                        {"name": "campaign", "type": "string"},
                    ],
                },
            ]
        },
    )
    properties: list[PropertySpec] | None = Field(
        default=None, description="Omit to infer every property (optional) from the sample"
    )
    description: str | None = Field(default=None, max_length=2000)


class ViolationStatOut(BaseModel):
    kind: str
    event: str
    property: str
    rule: str
    count: int
    quarantined: int
    last_seen_at: datetime


class EventOut(BaseModel):
    id: int
    source_id: int
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    group_id: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    properties: dict[str, Any] | None
    traits: dict[str, Any] | None
    context: dict[str, Any] | None
    external_ids: list[dict[str, Any]] | None
    extra: dict[str, Any] | None
    violations: list[dict[str, Any]] | None


class QuarantinedOut(BaseModel):
    id: int
    source_id: int
    message_id: str
    type: str | None
    event: str | None
    received_at: datetime
    violations: list[dict[str, Any]]
    message: dict[str, Any]


class ReleaseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ids": [1201, 1202]}, {"event": "Coupon Claimed"}]}
    )
    ids: list[int] | None = Field(default=None, max_length=10_000)
    event: str | None = Field(default=None, max_length=200, description="Release every event of this name")


class ReleaseOut(BaseModel):
    released: int
    kept: int = Field(description="Still breaking the spec; they stay in the quarantine")


class SystemBatchIn(BaseModel):
    """A Segment-style batch sent by a system with an API key instead of a write key."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "source_id": 3,
                    "batch": [
                        {
                            "type": "track",
                            "userId": "LX00000042",
                            "event": "Offline Activity Attended",
                            "properties": {"activity": "会员日沙龙", "store_code": "sh-01"},
                            "timestamp": "2026-05-01T10:00:00+08:00",
                            "messageId": "act-2026-05-01-42",
                        }
                    ],
                }
            ]
        },
    )
    source_id: int
    batch: list[dict[str, Any]] = Field(max_length=10_000)


class IngestOut(BaseModel):
    success: bool
    received: int
    stored: int
    duplicates: int = Field(description="Already stored under the same messageId (resends)")
    flagged: int
    quarantined: int
