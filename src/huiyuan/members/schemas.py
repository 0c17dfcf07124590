"""Request and response shapes of the members API."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from huiyuan.kit.pii import normalise
from huiyuan.members.consent_schemas import ConsentIn, check_unique_consents

Channel = Literal[
    "store", "mini_program", "app", "web", "douyin", "payment", "e_invoice", "parking", "referral", "import"
]
Status = Literal["prospect", "active", "frozen", "closed"]
Gender = Literal["male", "female", "unknown"]
IdentifierType = Literal[
    "phone",
    "email",
    "wechat_openid",
    "wechat_unionid",
    "alipay_id",
    "device_id",
    "card_number",
    "platform_id",
    "external_id",
]
PHONE_RE = re.compile(r"^1[3-9]\d{9}$")


class IdentifierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: IdentifierType
    value: str = Field(min_length=1, max_length=200)
    source: str | None = Field(default=None, max_length=60)


class IdentifierOut(BaseModel):
    id: int
    type: str
    value: str
    source: str | None
    verified: bool


class _Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=100, examples=["王小明"])
    gender: Gender | None = None
    birthday: date | None = Field(default=None, examples=["1990-05-20"])
    phone: str | None = Field(
        default=None,
        max_length=30,
        examples=["13800138000"],
        description="Mainland mobile number; spaces, dashes and +86 are accepted",
    )
    email: EmailStr | None = None
    province: str | None = Field(default=None, max_length=40, examples=["浙江省"])
    city: str | None = Field(default=None, max_length=40, examples=["杭州市"])
    occupation: str | None = Field(default=None, max_length=60)
    education: str | None = Field(default=None, max_length=40)
    income_band: str | None = Field(default=None, max_length=40)
    interests: list[str] | None = Field(default=None, max_length=50)
    custom: dict[str, Any] | None = Field(default=None, description="Values of the brand's custom fields")

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if not v:
            return v
        v = normalise("phone", v)
        if not PHONE_RE.match(v):
            raise ValueError("not a mainland mobile number (11 digits starting with 1)")
        return v

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, v: date | None) -> date | None:
        if v is not None and (v.year < 1900 or v > date.today()):
            raise ValueError("birthday must be between 1900 and today")
        return v


class MemberEnroll(_Attributes):
    """Enroll a member (or record a prospect)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "王小明",
                    "gender": "male",
                    "phone": "13800138000",
                    "enroll_channel": "mini_program",
                    "enroll_source": "campaign:spring-2026",
                    "identifiers": [{"type": "wechat_openid", "value": "oAbc123"}],
                    "custom": {"shoe_size": 42},
                }
            ]
        },
    )

    enroll_channel: Channel
    enroll_source: str | None = Field(default=None, max_length=120)
    enroll_store_code: str | None = Field(default=None, max_length=40)
    referrer_member_number: str | None = Field(default=None, max_length=32)
    join_condition: Literal["register", "first_purchase", "paid"] = "register"
    status: Literal["prospect", "active"] = "active"
    member_number: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    enrolled_at: datetime | None = None
    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=50)
    consents: list[ConsentIn] = Field(
        default_factory=list,
        max_length=20,
        description="Consents given at enrollment, one per purpose/channel",
    )

    @field_validator("consents")
    @classmethod
    def _consents(cls, v: list[ConsentIn]) -> list[ConsentIn]:
        return check_unique_consents(v)


class MemberUpdate(_Attributes):
    """Partial update: only the fields sent change. ``custom`` keys merge into existing values."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "王小明",
                    "birthday": "1990-05-20",
                    "phone": "13900138000",
                    "city": "上海市",
                    "interests": ["跑步", "咖啡"],
                    "custom": {"shoe_size": 42},
                    "expected_version": 3,
                },
                {"status": "frozen"},
            ]
        },
    )

    status: Literal["prospect", "active", "frozen"] | None = None
    expected_version: int | None = Field(default=None, description="Optimistic concurrency check")


class MemberClose(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "会员本人申请注销（客服工单 CS-20260312-0087）"}]},
    )
    reason: str = Field(min_length=1, max_length=200)


class MemberOut(BaseModel):
    id: int
    brand_id: int
    member_number: str
    status: str
    name: str | None
    gender: str
    birthday: date | None
    phone: str | None = Field(description="Masked unless the caller has members:pii")
    email: str | None
    province: str | None
    city: str | None
    occupation: str | None
    education: str | None
    income_band: str | None
    interests: list[str]
    enroll_channel: str
    enroll_source: str | None
    enroll_store_id: int | None
    join_condition: str
    enrolled_at: datetime
    custom: dict[str, Any]
    identifiers: list[IdentifierOut] = Field(default_factory=list)
    closed_at: datetime | None
    close_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime
