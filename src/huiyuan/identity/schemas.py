"""Request and response shapes of the OneID API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from huiyuan.identity.rules import NORMALISERS, validate_pattern
from huiyuan.identity.survivorship import RULES

MAX_BATCH = 10_000
TYPE_CODE = r"^[a-z][a-z0-9_]{1,23}$"


class IdentifierIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"type": "phone", "value": "13800138000"}]}
    )

    type: str = Field(pattern=TYPE_CODE)
    value: str = Field(min_length=1, max_length=200)


class IdentifierOut(BaseModel):
    id: int = Field(description="Node id in the identity graph")
    type: str
    value: str = Field(description="Masked unless the caller has members:pii (member numbers are shown)")
    source: str
    first_seen_at: datetime
    last_seen_at: datetime


class SurvivorOut(BaseModel):
    value: Any
    rule: str
    source: str | None
    observed_at: datetime | None


class LinkOut(BaseModel):
    id: int
    left_id: int
    right_id: int
    source: str
    rule: str
    confidence: float
    status: str = Field(description="active, removed or refused")
    created_at: datetime
    created_by: str
    removed_at: datetime | None = None
    removed_reason: str | None = None


class OneIdOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "oneid": 1001,
                    "status": "active",
                    "merged_into": None,
                    "identifiers": [
                        {
                            "id": 7,
                            "type": "member_number",
                            "value": "AL00000042",
                            "source": "member",
                            "first_seen_at": "2026-05-01T08:00:00Z",
                            "last_seen_at": "2026-05-02T08:00:00Z",
                        }
                    ],
                    "golden": {"name": {"value": "王小明", "rule": "most_trusted", "source": "member"}},
                }
            ]
        }
    )

    oneid: int
    status: str = Field(description="active, or retired (merged into ``merged_into``)")
    merged_into: int | None = None
    identifiers: list[IdentifierOut]
    golden: dict[str, SurvivorOut] = Field(default_factory=dict, description="The golden record")
    links: list[LinkOut] | None = Field(default=None, description="With include_links=true")


class ResolveBatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "identifiers": [
                        {"type": "phone", "value": "13800138000"},
                        {"type": "member_number", "value": "LX00001234"},
                        {"type": "wechat_unionid", "value": "o6_bmasdasdsad6_2sgVt7hMZOPfL"},
                    ],
                    "expand": True,
                }
            ]
        },
    )
    identifiers: list[IdentifierIn] = Field(min_length=1, max_length=MAX_BATCH)
    expand: bool = Field(default=False, description="Also list every identifier of each OneID")


class ResolvedItem(BaseModel):
    index: int
    oneid: int | None = Field(description="None when the identifier is unknown or refused")
    error: str | None = Field(default=None, description="unknown-identifier, blocked-value, unknown-type …")
    identifiers: list[IdentifierOut] | None = None


class ResolveBatchOut(BaseModel):
    items: list[ResolvedItem]
    found: int


class ChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: Literal["merge", "split"]
    oneid: int = Field(description="merge: the OneID kept; split: the OneID that was split")
    others: list[int] = Field(description="merge: the OneIDs absorbed; split: the OneIDs of the parts")
    cause: str
    reason: str | None
    actor: str
    at: datetime


class ChangeFeed(BaseModel):
    items: list[ChangeOut]
    cursor: str = Field(description="Pass back as ?cursor= to get what happened after these")
    has_more: bool


class LinkIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "left": {"type": "member_number", "value": "LX00001234"},
                    "right": {"type": "alipay_id", "value": "2088102146225135"},
                    "reason": "客服核实：同一会员的支付宝账号 (verified by customer service)",
                }
            ]
        },
    )
    left: IdentifierIn
    right: IdentifierIn
    reason: str = Field(min_length=1, max_length=300)


class PersonRef(BaseModel):
    """One side of a manual merge: a person named by one of their identifiers, or by their OneID."""

    model_config = ConfigDict(extra="forbid")
    type: str | None = Field(default=None, pattern=TYPE_CODE)
    value: str | None = Field(default=None, min_length=1, max_length=200)
    oneid: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_way(self) -> PersonRef:
        by_identifier = self.type is not None or self.value is not None
        if by_identifier == (self.oneid is not None):
            raise ValueError("name the person by type and value, or by oneid (one of the two)")
        if by_identifier and (self.type is None or self.value is None):
            raise ValueError("an identifier needs both type and value")
        return self


class MergeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "left": {"oneid": 1201},
                    "right": {"type": "phone", "value": "13800138000"},
                    "reason": "Same customer confirmed at the counter (ticket 5531)",
                }
            ]
        },
    )
    left: PersonRef
    right: PersonRef
    reason: str = Field(min_length=1, max_length=300)

    @field_validator("reason")
    @classmethod
    def _reason_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the reason for the merge")
        return value.strip()


class MergeOut(BaseModel):
    status: str = Field(
        description="merged; same (already one person, nothing done); blocked (the two identifiers "
        "were unlinked by hand, nothing done)"
    )
    oneid: int | None = Field(description="The OneID of the merged person")
    link_id: int | None = Field(description="The manual link that joins them")
    oneids: list[int] = Field(description="The OneIDs the two sides had before the merge")


class UnlinkIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"link_id": 5812, "reason": "共用设备，不是同一人 (a shared device, two people)"}]
        },
    )
    link_id: int
    reason: str = Field(min_length=1, max_length=300)


class LinkResultOut(BaseModel):
    status: str = Field(description="linked, merged, exists, same, blocked")
    oneid: int | None
    link_id: int | None


class UnlinkOut(BaseModel):
    removed: list[int]
    splits: list[dict[str, Any]]


class ConflictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    link_id: int | None
    reason: str
    detail: dict[str, Any]
    oneids: list[int]
    status: str
    occurrences: int
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    next_cursor: str | None
    limit: int


class ConflictResolve(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"conflict_id": 77, "action": "accept", "note": "门店确认为同一会员"},
                {"conflict_id": 78, "action": "dismiss"},
            ]
        },
    )
    conflict_id: int
    action: Literal["accept", "dismiss"]
    note: str | None = Field(default=None, max_length=300)


class TypeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(default=None, max_length=60)
    priority: int | None = Field(default=None, ge=1, le=1000)
    max_per_person: int | None = Field(default=None, ge=1, le=100_000)
    unlimited: bool = Field(default=False, description="No per-person limit (overrides max_per_person)")
    normaliser: str | None = None
    blocked_values: list[str] | None = Field(default=None, max_length=500)
    blocked_patterns: list[str] | None = Field(default=None, max_length=50)
    enabled: bool | None = None

    @field_validator("normaliser")
    @classmethod
    def _normaliser(cls, v: str | None) -> str | None:
        if v is not None and v not in NORMALISERS:
            raise ValueError(f"must be one of {', '.join(NORMALISERS)}")
        return v

    @field_validator("blocked_patterns")
    @classmethod
    def _patterns(cls, v: list[str] | None) -> list[str] | None:
        for pattern in v or []:
            if (error := validate_pattern(pattern)) is not None:
                raise ValueError(f"{pattern!r}: {error}")
        return v


class SettingsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "types": {
                        "phone": {"max_per_person": 3},
                        "device_id": {"blocked_values": ["00000000-0000-0000-0000-000000000000"]},
                    },
                    "survivorship": {"city": "most_trusted"},
                    "auto_link_threshold": 0.98,
                    "review_threshold": 0.8,
                }
            ]
        },
    )
    types: dict[str, TypeSettings] | None = None
    source_trust: list[str] | None = Field(default=None, max_length=30)
    survivorship: dict[str, str] | None = None
    auto_link_threshold: float | None = Field(default=None, gt=0, le=1)
    review_threshold: float | None = Field(default=None, gt=0, le=1)

    @field_validator("survivorship")
    @classmethod
    def _rules(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for attribute, rule in (v or {}).items():
            if rule not in RULES:
                raise ValueError(f"{attribute}: rule must be one of {', '.join(RULES)}")
        return v


class TypeOut(BaseModel):
    code: str
    label: str
    priority: int
    max_per_person: int | None
    normaliser: str
    blocked_values: list[str]
    blocked_patterns: list[str]
    pii: bool
    enabled: bool


class SettingsOut(BaseModel):
    types: list[TypeOut] = Field(description="In priority order")
    source_trust: list[str]
    survivorship: dict[str, str]
    auto_link_threshold: float
    review_threshold: float


class ProposalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    left_node_id: int
    right_node_id: int
    left_oneid: int
    right_oneid: int
    probability: float
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class ProposalPage(BaseModel):
    items: list[ProposalOut]
    next_cursor: str | None
    limit: int


class ProposalDecision(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"proposal_id": 301, "accept": True}]}
    )
    proposal_id: int
    accept: bool


class JobStarted(BaseModel):
    job_id: int
    kind: str
    status: str
