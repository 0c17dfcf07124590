"""Request and response shapes of the member-facing API (member tokens, ``/api/v1/me``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from huiyuan.members.schemas import Gender, IdentifierIn


class MemberTokenRequest(BaseModel):
    """Name the member in exactly one way: ``member_id``, ``member_number`` or an ``identifier``."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"identifier": {"type": "wechat_openid", "value": "oAbc123"}},
                {"member_number": "AL00000042"},
            ]
        },
    )

    member_id: int | None = None
    member_number: str | None = Field(default=None, max_length=32)
    identifier: IdentifierIn | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberTokenRequest:
        given = [f for f in ("member_id", "member_number", "identifier") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of member_id, member_number, identifier")
        return self


class MemberTokenOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"token": "hym_eyJiIjoxLCJtIjo0Mn0…", "token_type": "Bearer", "expires_in": 900}]
        }
    )

    token: str = Field(description="Send as 'Authorization: Bearer <token>' to /api/v1/me")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class MeOut(BaseModel):
    """The member's own record; their own PII is shown in full."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_number": "AL00000042",
                    "status": "active",
                    "name": "王小明",
                    "gender": "male",
                    "birthday": "1990-05-20",
                    "phone": "13800138000",
                    "email": "wang@example.com",
                    "province": "浙江省",
                    "city": "杭州市",
                    "interests": ["running"],
                    "enrolled_at": "2026-03-01T02:00:00Z",
                }
            ]
        }
    )

    member_number: str
    status: str
    name: str | None
    gender: str
    birthday: date | None
    phone: str | None
    email: str | None
    province: str | None
    city: str | None
    interests: list[str]
    enrolled_at: datetime


class MeUpdate(BaseModel):
    """What a member may change about themselves; status, number and phone are not among it."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"city": "杭州市", "interests": ["running", "coffee"]}]},
    )

    name: str | None = Field(default=None, max_length=100)
    gender: Gender | None = None
    birthday: date | None = None
    province: str | None = Field(default=None, max_length=40)
    city: str | None = Field(default=None, max_length=40)
    interests: list[str] | None = Field(default=None, max_length=50)
    email: EmailStr | None = None

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, v: date | None) -> date | None:
        if v is not None and (v.year < 1900 or v > date.today()):
            raise ValueError("birthday must be between 1900 and today")
        return v
