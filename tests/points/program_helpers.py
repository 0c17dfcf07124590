"""The shared point programme (联盟积分) of the programme tests: a host brand with the programme's
point type, participants B and C and an outsider D, made through the real services, with shortcuts
to link, earn, spend, read and settle as any of the brands.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM, Principal, Scope, system_for_brand
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points import clearing, program_admin, program_clearing, programs
from huiyuan.points.models import PointType
from huiyuan.points.program_models import PointProgramLink
from huiyuan.points.program_schemas import ParticipationIn, ProgramIn
from tests.factories import make_brand
from tests.points.helpers import MONTHLY

PHONE = "13800138000"


def api_headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def _code(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Alliance:
    """A host brand H with the programme's point type, participants B and C, and outsider D."""

    db: Database
    code: str
    host: int
    b: int
    c: int
    d: int
    codes: dict[int, str]
    members: dict[str, int] = field(default_factory=dict)

    def actor(self, brand_id: int) -> Principal:
        return system_for_brand(brand_id)

    def run(self, brand_id: int | None, fn: Callable[..., Any], **kw: Any) -> Any:
        actor = SYSTEM if brand_id is None else self.actor(brand_id)
        with self.db.unit_of_work(actor.scope) as s:
            return fn(s, actor=actor, **kw)

    def enroll(self, brand_id: int, name: str, phone: str | None = PHONE) -> int:
        member = self.run(
            brand_id, members.enroll_member, data=MemberEnroll(enroll_channel="store", name=name, phone=phone)
        )
        return int(member.id)

    def link(self, brand_id: int, member_id: int) -> PointProgramLink:
        link, _created = self.run(brand_id, programs.link_member, code=self.code, member_id=member_id)
        return link

    def earn(self, brand_id: int, member_id: int, key: str, **kw: Any) -> programs.ProgramResult:
        return self.run(brand_id, programs.earn, code=self.code, member_id=member_id, key=key, **kw)

    def spend(
        self, brand_id: int, member_id: int, amount: int, key: str, **kw: Any
    ) -> programs.ProgramResult:
        return self.run(
            brand_id, programs.spend, code=self.code, member_id=member_id, amount=amount, key=key, **kw
        )

    def points(self, brand_id: int, member_id: int) -> Any:
        return self.run(brand_id, programs.member_points, code=self.code, member_id=member_id)

    def settle(self, brand_id: int | None, start: datetime, end: datetime) -> clearing.Settlement:
        return self.run(brand_id, program_clearing.settle, code=self.code, start=start, end=end)


def make_alliance(db: Database, *, fair_value: str = "0.01") -> Alliance:
    ids = [make_brand(db, _code(p)) for p in ("h", "b", "c", "d")]
    host, b, c, d = ids
    with db.unit_of_work(Scope(brand_id=host)) as s:
        s.add(
            PointType(
                brand_id=host,
                code="alliance",
                name="联盟积分",
                kind="spendable",
                fair_value=Decimal(fair_value),
                expiry_policy=MONTHLY,
            )
        )
    code = _code("al-")
    with db.unit_of_work() as s:
        from huiyuan.tenancy.models import Brand

        codes = {i: s.get(Brand, i).code for i in ids}  # type: ignore[union-attr]
        program_admin.create_program(
            s,
            actor=SYSTEM,
            data=ProgramIn(code=code, name="联盟", host_brand=codes[host], point_type="alliance"),
        )
        program_admin.add_brand(
            s, actor=SYSTEM, code=code, data=ParticipationIn(brand=codes[b], earn_rate=Decimal(2))
        )
        program_admin.add_brand(
            s, actor=SYSTEM, code=code, data=ParticipationIn(brand=codes[c], earn_rate=Decimal(1))
        )
    return Alliance(db=db, code=code, host=host, b=b, c=c, d=d, codes=codes)
