"""Factories: plain keyword functions that build real rows through the real services."""

from __future__ import annotations

from typing import Any

from huiyuan.auth import service as auth
from huiyuan.auth.permissions import BRAND_ADMIN
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM, system_for_brand
from huiyuan.tenancy import service as tenancy
from tests.conftest import BrandFixture, World


def make_brand(db: Database, code: str, name: str | None = None, *, stores: int = 1) -> int:
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(
            s, actor=SYSTEM, code=code, name=name or code.upper(), member_number_prefix=code[:2].upper()
        )
        for i in range(stores):
            tenancy.create_store(
                s,
                actor=system_for_brand(brand.id),
                code=f"{code}-s{i + 1}",
                name=f"{code} store {i + 1}",
                city="上海市",
                province="上海市",
            )
        return brand.id


def make_key(db: Database, brand_id: int | None, scopes: list[str] | None = None, name: str = "test") -> str:
    with db.unit_of_work() as s:
        issued = auth.create_api_key(
            s,
            actor=SYSTEM,
            name=name,
            brand_id=brand_id,
            scopes=scopes if scopes is not None else sorted(BRAND_ADMIN),
        )
        return issued.secret


def make_world(db: Database) -> World:
    brands = []
    for code in ("alpha", "beta"):
        bid = make_brand(db, code)
        key = make_key(db, bid)
        brands.append(BrandFixture(id=bid, code=code, key=key, headers={"Authorization": f"Bearer {key}"}))
    return World(db=db, platform_key=make_key(db, None, ["*"], name="platform"), brands=brands)


def enroll(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"enroll_channel": "store", **fields}
    r = client.post("/api/v1/members", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())
