"""Request and response shapes of the identifiers, cards and member-QR API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from huiyuan.members.schemas import IdentifierType

CARD_NUMBER_PATTERN = r"^[A-Za-z0-9-]{4,32}$"


class IdentifierAdd(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"type": "wechat_openid", "value": "oAbc123", "source": "mini_program"}]
        },
    )

    type: IdentifierType
    value: str = Field(min_length=1, max_length=200)
    source: str | None = Field(default=None, max_length=60, examples=["mini_program"])


class CardBind(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"card_number": "8800012345678"}]},
    )
    card_number: str = Field(pattern=CARD_NUMBER_PATTERN, examples=["8800012345678"])


class CardLost(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "会员来电挂失：钱包被盗"}]}
    )
    reason: str = Field(min_length=1, max_length=200, examples=["wallet stolen"])


class CardReplace(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"new_card_number": "8800012345679"}]},
    )
    new_card_number: str = Field(pattern=CARD_NUMBER_PATTERN, examples=["8800012345679"])


class CardOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "member_id": 42,
                    "card_number": "88**********79",
                    "status": "active",
                    "bound_at": "2026-05-01T08:00:00Z",
                    "lost_at": None,
                    "replaces_card_id": 6,
                }
            ]
        }
    )

    id: int
    member_id: int
    card_number: str = Field(description="Masked unless the caller has members:pii")
    status: Literal["active", "lost", "replaced"]
    bound_at: datetime
    lost_at: datetime | None
    replaces_card_id: int | None


class QrTokenOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"token": "eyJiIjoxLCJtIjo0Mn0.Zx…", "expires_at": "2026-05-01T08:05:00Z"}]
        }
    )

    token: str = Field(
        description="Signed, expiring member code; staff verify it at /api/v1/members/qr/verify"
    )
    expires_at: datetime


class QrVerify(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"token": "eyJiIjoxLCJtIjo0MiwibiI6IjdmM2EifQ.Zx1c2w.Qk3n8vJ5Hq0y2mWzr4Xc1d9Tt6U"}]
        },
    )
    token: str = Field(min_length=1, max_length=500)


class MemberSummary(BaseModel):
    """What a cashier needs after scanning a member code; the phone is always masked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "member_number": "AL00000042",
                    "name": "王小明",
                    "status": "active",
                    "phone": "138****8000",
                }
            ]
        }
    )

    id: int
    member_number: str
    name: str | None
    status: str
    phone: str | None


class CardList(BaseModel):
    items: list[CardOut]
