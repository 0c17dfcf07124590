"""HTTP routes for brands and stores: thin — authenticate, call one service verb, shape the response.

Brand principals see only their own brand; creating brands is for platform principals with
``brands:manage``. Stores are brand-owned rows, so the session's tenancy filter scopes them.
The request/response shapes are small and live here rather than in a schemas module of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from huiyuan.auth.deps import PrincipalDep, require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.tenancy import service
from huiyuan.tenancy.models import Brand, Store
from huiyuan.tenancy.repository import TenancyRepository

router = APIRouter(prefix="/api/v1", tags=["brands and stores"])

Reader = Annotated[Principal, require("orders:read")]
Writer = Annotated[Principal, require("orders:write")]
BrandManager = Annotated[Principal, require("brands:manage")]


class BrandIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"code": "lanxi", "name": "兰溪咖啡", "member_number_prefix": "LX"}]},
    )
    code: str = Field(min_length=2, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)
    member_number_prefix: str = Field(default="M", min_length=1, max_length=8, pattern=r"^[A-Z0-9]+$")
    timezone: str = Field(default="Asia/Shanghai", max_length=64)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (use an IANA name such as Asia/Shanghai)")
        return v


class BrandOut(BaseModel):
    id: int
    code: str
    name: str
    timezone: str
    member_number_prefix: str
    status: str
    created_at: datetime


class StoreIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"code": "sh-001", "name": "上海南京西路店", "city": "上海市", "province": "上海市"}]
        },
    )
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    city: str | None = Field(default=None, max_length=64)
    province: str | None = Field(default=None, max_length=64)
    kind: Literal["store", "online", "outlet"] = "store"


class StoreOut(BaseModel):
    id: int
    brand_id: int
    code: str
    name: str
    city: str | None
    province: str | None
    kind: str
    status: str
    created_at: datetime


def _brand_out(b: Brand) -> BrandOut:
    return BrandOut(
        id=b.id,
        code=b.code,
        name=b.name,
        timezone=b.timezone,
        member_number_prefix=b.member_number_prefix,
        status=b.status,
        created_at=b.created_at,
    )


def _store_out(s: Store) -> StoreOut:
    return StoreOut(
        id=s.id,
        brand_id=s.brand_id,
        code=s.code,
        name=s.name,
        city=s.city,
        province=s.province,
        kind=s.kind,
        status=s.status,
        created_at=s.created_at,
    )


@router.get("/brands", response_model=list[BrandOut], summary="List the brands the caller may see")
def list_brands(session: SessionDep, actor: PrincipalDep) -> list[BrandOut]:
    return [_brand_out(b) for b in TenancyRepository(session).brands()]


@router.post("/brands", response_model=BrandOut, status_code=201, summary="Create a brand (platform)")
def create_brand(data: BrandIn, session: SessionDep, actor: BrandManager) -> BrandOut:
    brand = service.create_brand(
        session,
        actor=actor,
        code=data.code,
        name=data.name,
        member_number_prefix=data.member_number_prefix,
        timezone=data.timezone,
    )
    return _brand_out(brand)


@router.get("/stores", response_model=list[StoreOut], summary="List stores")
def list_stores(session: SessionDep, actor: Reader) -> list[StoreOut]:
    return [_store_out(s) for s in TenancyRepository(session).stores()]


@router.post("/stores", response_model=StoreOut, status_code=201, summary="Add a store")
def create_store(data: StoreIn, session: SessionDep, actor: Writer) -> StoreOut:
    store = service.create_store(
        session,
        actor=actor,
        code=data.code,
        name=data.name,
        city=data.city,
        province=data.province,
        kind=data.kind,
    )
    return _store_out(store)


@router.get("/stores/{store_id}", response_model=StoreOut, summary="Get a store")
def get_store(store_id: int, session: SessionDep, actor: Reader) -> StoreOut:
    return _store_out(service.get_store(session, store_id))
