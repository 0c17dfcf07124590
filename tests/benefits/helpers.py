"""Shared set-up for the benefit tests.

``make_benefit_brand`` builds a brand with a spendable point type, a store and a few members through
the real services; ``BenefitBrand`` runs one verb per transaction (as the API does) and defines
catalogue benefits from plain dicts. ``T0`` is a Monday, 10:00 in Asia/Shanghai.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from huiyuan.benefits import catalogue, entitlements
from huiyuan.benefits.models import BenefitDefinition, BenefitEvent, MemberBenefit
from huiyuan.kit.db import Base, Database
from huiyuan.kit.scope import SYSTEM, Principal, system_for_brand
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points.models import PointType
from huiyuan.tenancy import service as tenancy
from tests.conftest import World
from tests.factories import make_key

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Asia/Shanghai

_codes = itertools.count(1)

PARKING: dict[str, Any] = {
    "code": "PARK-2H",
    "name": "免费停车 2 小时",
    "kind": "service",
    "service_type": "parking",
    "verification": "scan",
    "limits": {"uses_per_entitlement": 1, "duration_minutes": 120},
    "unit_cost": "10.00",
    "funded_by": "brand",
    "served_by": "store:car-park",
}


@dataclass
class BenefitBrand:
    db: Database
    brand_id: int
    actor: Principal
    store_id: int
    members: list[int] = field(default_factory=list)

    def run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with self.db.unit_of_work(self.actor.scope) as s:
            out = fn(s, actor=self.actor, **kwargs)
            s.flush()
            names = ("entitlement", "usage", "appointment", "card")
            for obj in (out, *(getattr(out, n, None) for n in names)):
                if isinstance(obj, Base):
                    s.refresh(obj)
                    s.expunge(obj)
            return out

    def read(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Call a read function ``fn(session, **kwargs)`` (no actor) in a transaction of its own."""
        with self.db.unit_of_work(self.actor.scope) as s:
            out = fn(s, **kwargs)
            if isinstance(out, Base):
                s.expunge(out)
            return out

    def define(self, body: dict[str, Any] | None = None, **changes: Any) -> BenefitDefinition:
        data = {**(body or PARKING), **changes}
        data.setdefault("code", f"B{next(_codes)}")
        parsed = catalogue.DEFINITION_ADAPTER.validate_python(data)
        result: BenefitDefinition = self.run(catalogue.create_definition, data=parsed)
        return result

    def grant(self, code: str, member: int, key: str, **kw: Any) -> entitlements.GrantResult:
        result: entitlements.GrantResult = self.run(
            entitlements.grant_benefit,
            member_id=member,
            code=code,
            source_type=kw.pop("source_type", "operator"),
            source_id=kw.pop("source_id", "test"),
            key=key,
            **kw,
        )
        return result

    def entitlement(self, member_benefit_id: int) -> MemberBenefit:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            found = s.get(MemberBenefit, member_benefit_id)
            assert found is not None
            s.expunge(found)
            return found

    def event_kinds(self, member_benefit_id: int) -> list[str]:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            return list(
                s.scalars(
                    select(BenefitEvent.kind)
                    .where(BenefitEvent.member_benefit_id == member_benefit_id)
                    .order_by(BenefitEvent.id)
                )
            )

    def count(self, model: Any, *where: Any) -> int:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def make_benefit_brand(db: Database, *, members_count: int = 3) -> BenefitBrand:
    code = f"b{next(_codes)}{uuid.uuid4().hex[:8]}"
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=code, name=code.upper(), member_number_prefix="B")
        brand_id = brand.id
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        store = tenancy.create_store(
            s, actor=actor, code=f"{code}-s1", name="store", city="上海市", province="上海市"
        )
        s.add(
            PointType(
                brand_id=brand_id, code="pts", name="积分", kind="spendable", expiry_policy={"kind": "never"}
            )
        )
        ids = [
            members.enroll_member(s, actor=actor, data=MemberEnroll(enroll_channel="store", name=f"m{n}")).id
            for n in range(members_count)
        ]
        store_id = store.id
    return BenefitBrand(db=db, brand_id=brand_id, actor=actor, store_id=store_id, members=ids)


def member_headers(client: Any, world: World, member_id: int, brand: int = 0) -> dict[str, str]:
    key = make_key(world.db, world.brands[brand].id, ["members:token"], name="app")
    r = client.post(
        "/api/v1/member-tokens", json={"member_id": member_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code, body
    return body
