"""Request and response shapes of consents and verifications (``/api/v1/members/{id}/consents``,
``/verifications``) and of the ``consents`` list accepted at enrollment. Shapes only; the rules live
in ``members.consent``."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

ConsentPurpose = Literal["marketing", "profiling", "partner_sharing"]
ConsentChannel = Literal["sms", "email", "wechat", "app_push", "phone", "all"]
VerificationKind = Literal["real_name", "student", "occupation"]
VerificationStatus = Literal["pending", "verified", "rejected"]

MAX_EVIDENCE_KEYS = 20
MAX_EVIDENCE_CHARS = 2000
# A run this long is a full identity-card or account number, which evidence must never hold.
_LONG_NUMBER = re.compile(r"\d{15,}")


def _check_evidence(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_EVIDENCE_KEYS:
        raise ValueError(f"at most {MAX_EVIDENCE_KEYS} evidence entries")
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_EVIDENCE_CHARS:
        raise ValueError(f"evidence is limited to {MAX_EVIDENCE_CHARS} characters of JSON")
    if _LONG_NUMBER.search(text):
        raise ValueError("evidence must not contain full identity or account numbers")
    return value


class ConsentIn(BaseModel):
    """Give (``granted: true``) or withdraw (``granted: false``) consent for a purpose on a channel;
    ``channel: "all"`` covers every channel at once."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "purpose": "marketing",
                    "channel": "sms",
                    "granted": True,
                    "source": "mini_program:signup",
                    "evidence": {"form_version": "2026-03", "checkbox": "marketing_sms"},
                },
                {"purpose": "marketing", "channel": "all", "granted": False, "source": "sms:reply-TD"},
            ]
        },
    )

    purpose: ConsentPurpose
    channel: ConsentChannel
    granted: StrictBool
    source: str | None = Field(
        default=None, min_length=1, max_length=60, description="Where it was given or withdrawn"
    )
    evidence: dict[str, Any] = Field(default_factory=dict, description="Form version, IP, recording id …")

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_evidence(value)


def check_unique_consents(items: list[ConsentIn]) -> list[ConsentIn]:
    """One entry per (purpose, channel) in a single request."""
    seen = set()
    for item in items:
        if (item.purpose, item.channel) in seen:
            raise ValueError(f"{item.purpose}/{item.channel} appears twice")
        seen.add((item.purpose, item.channel))
    return items


class ConsentOut(BaseModel):
    id: int
    purpose: str
    channel: str
    granted: bool
    at: datetime
    source: str
    evidence: dict[str, Any]


class ConsentsOut(BaseModel):
    """The consents in force, what they mean per channel, and the full history (newest first)."""

    member_id: int
    effective: dict[str, dict[str, bool]] = Field(
        description="purpose → channel → allowed, after applying the 'all' rule",
        examples=[{"marketing": {"sms": True, "email": False}}],
    )
    current: list[ConsentOut]
    history: list[ConsentOut]
    changed: bool | None = Field(default=None, description="On a change request: whether a row was added")


class VerificationEvidence(BaseModel):
    """What was checked, never the document itself: at most the last four characters of its number."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    document_type: str = Field(min_length=1, max_length=40, examples=["resident_id", "student_card"])
    document_last4: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{4}$", examples=["123X"])
    checked_by: str | None = Field(default=None, min_length=1, max_length=100, examples=["store:SH001"])
    reference: str | None = Field(default=None, min_length=1, max_length=100, examples=["chk-2026-0042"])
    expires_on: date | None = None

    @model_validator(mode="after")
    def _no_full_numbers(self) -> VerificationEvidence:
        for name in ("document_type", "checked_by", "reference"):
            value = getattr(self, name)
            if value and _LONG_NUMBER.search(value):
                raise ValueError(f"{name} must not contain a full identity or account number")
        return self


class VerificationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "student",
                    "status": "verified",
                    "evidence": {
                        "document_type": "student_card",
                        "document_last4": "0421",
                        "checked_by": "store:SH001",
                        "expires_on": "2027-07-31",
                    },
                }
            ]
        },
    )

    kind: VerificationKind
    status: VerificationStatus
    evidence: VerificationEvidence


class VerificationOut(BaseModel):
    id: int
    kind: str
    status: str
    evidence: dict[str, Any]
    at: datetime
    by: str | None


class VerificationsOut(BaseModel):
    member_id: int
    current: dict[str, VerificationOut] = Field(description="kind → newest verification")
    items: list[VerificationOut] = Field(description="Every verification, newest first")
