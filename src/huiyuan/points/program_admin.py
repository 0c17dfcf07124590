"""Administration of shared point programmes: the platform creates programmes on a host brand's
point type, lets brands join and leave and sets their earn rates; everyone reads the programmes
they may see (the platform all, a brand those it takes or took part in, with its own participation
only). See ``points.programs`` for the design.

Writes are for platform principals with ``brands:manage``; they are audited as platform actions,
and make this process forget which brands it remembered as outside every programme
(``program_cache``). Nothing here commits.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.points import program_cache
from huiyuan.points.program_models import PointProgram, PointProgramBrand
from huiyuan.points.program_repository import ProgramRepository
from huiyuan.points.program_schemas import (
    ParticipationIn,
    ParticipationOut,
    ParticipationUpdate,
    ProgramIn,
    ProgramOut,
    ProgramUpdate,
)
from huiyuan.points.programs import ProgramInactive, host_scope, participation_of, program_by_code
from huiyuan.tenancy.models import Brand


def _require_platform(actor: Principal) -> None:
    if not actor.scope.is_platform_wide:
        raise PermissionDenied("Only the platform manages point programmes.")
    actor.require("brands:manage")


def _managed(session: Session, actor: Principal, code: str) -> PointProgram:
    """The programme for a platform write; a brand outside the programme gets 404 like for any read
    (it learns nothing of other brands' programmes), a brand in it 403."""
    program = get_program(session, actor=actor, code=code)
    _require_platform(actor)
    return program


def _brand(session: Session, code: str, field: str = "brand") -> Brand:
    brand = ProgramRepository(session).brand_by_code(code)
    if brand is None:
        raise ValidationFailed(
            "Unknown brand.", errors=[field_error(field, "no such brand", "unknown-brand")]
        )
    return brand


def create_program(session: Session, *, actor: Principal, data: ProgramIn) -> PointProgram:
    """Create a programme on a spendable point type of the host brand; the host joins as ``host``."""
    _require_platform(actor)
    repo = ProgramRepository(session)
    if repo.program_by_code(data.code) is not None:
        raise Conflict(
            f"Programme '{data.code}' exists.", errors=[field_error("code", "already in use", "taken")]
        )
    host = _brand(session, data.host_brand, "host_brand")
    pt = repo.point_type(host.id, data.point_type)
    if pt is None or pt.status != "active":
        raise ValidationFailed(
            "Unknown point type.",
            errors=[field_error("point_type", "no such active point type of the host", "unknown-point-type")],
        )
    if pt.kind != "spendable" or not pt.spendable:
        raise ValidationFailed(
            "A programme needs spendable points.",
            errors=[field_error("point_type", "must be a spendable point type", "not-spendable")],
        )
    if repo.program_of_type(pt.id) is not None:
        raise Conflict(
            "This point type already backs a programme.",
            errors=[field_error("point_type", "already used by a programme", "taken")],
        )
    program = PointProgram(
        code=data.code,
        name=data.name,
        host_brand_id=host.id,
        point_type_id=pt.id,
        status="active",
        created_by=actor.label[:120],
    )
    session.add(program)
    session.flush()
    session.add(
        PointProgramBrand(
            brand_id=host.id,
            program_id=program.id,
            role="host",
            status="active",
            earn_rate=data.host_earn_rate,
        )
    )
    session.flush()
    program_cache.forget_on_change(session)
    audit.record(
        session,
        actor=actor,
        action="point_program.created",
        entity_type="point_program",
        entity_id=program.id,
        brand_id=None,
        after={"code": data.code, "name": data.name, "host_brand": host.code, "point_type": pt.code},
    )
    return program


def update_program(session: Session, *, actor: Principal, code: str, data: ProgramUpdate) -> PointProgram:
    """Rename, pause (no new grants), resume or close (nothing more) a programme."""
    program = _managed(session, actor, code)
    before = {"name": program.name, "status": program.status}
    if program.status == "closed" and data.status not in (None, "closed"):
        raise Conflict(
            "A closed programme cannot reopen.", errors=[field_error("status", "closed", "closed")]
        )
    if data.name is not None:
        program.name = data.name
    if data.status is not None:
        program.status = data.status
    session.flush()
    program_cache.forget_on_change(session)
    audit.record(
        session,
        actor=actor,
        action="point_program.updated",
        entity_type="point_program",
        entity_id=program.id,
        brand_id=None,
        before=before,
        after={"name": program.name, "status": program.status},
    )
    return program


def add_brand(session: Session, *, actor: Principal, code: str, data: ParticipationIn) -> PointProgramBrand:
    """Let a brand take part in a programme (again, if it left)."""
    program = _managed(session, actor, code)
    if program.status == "closed":
        raise ProgramInactive("The programme is closed.")
    brand = _brand(session, data.brand)
    repo = ProgramRepository(session)
    found = repo.participation(program.id, brand.id)
    if found is not None and found.status == "active":
        raise Conflict(
            "The brand already takes part.",
            errors=[field_error("brand", "already in the programme", "taken")],
        )
    if found is None:
        found = PointProgramBrand(brand_id=brand.id, program_id=program.id, role="participant")
        session.add(found)
    found.status = "active"
    found.earn_rate = data.earn_rate
    found.joined_at = utcnow()
    found.left_at = None
    session.flush()
    program_cache.forget_on_change(session)
    audit.record(
        session,
        actor=actor,
        action="point_program.brand_joined",
        entity_type="point_program",
        entity_id=program.id,
        brand_id=None,
        after={"brand": brand.code, "earn_rate": str(data.earn_rate)},
    )
    return found


def update_participation(
    session: Session, *, actor: Principal, code: str, brand_code: str, data: ParticipationUpdate
) -> PointProgramBrand:
    """Change a brand's earn rate, or let it leave (its members keep their points)."""
    program = _managed(session, actor, code)
    brand = _brand(session, brand_code)
    found = ProgramRepository(session).participation(program.id, brand.id)
    if found is None:
        raise NotFound(f"Brand '{brand_code}' does not take part in '{code}'.")
    before = {"status": found.status, "earn_rate": str(found.earn_rate)}
    if data.status == "left" and found.role == "host":
        raise ValidationFailed(
            "The host cannot leave its own programme; close the programme instead.",
            errors=[field_error("status", "the host cannot leave", "host")],
        )
    if data.earn_rate is not None:
        found.earn_rate = data.earn_rate
    if data.status is not None and data.status != found.status:
        found.status = data.status
        found.left_at = utcnow() if data.status == "left" else None
        if data.status == "active":
            found.joined_at = utcnow()
    session.flush()
    program_cache.forget_on_change(session)
    audit.record(
        session,
        actor=actor,
        action="point_program.participation_updated",
        entity_type="point_program",
        entity_id=program.id,
        brand_id=None,
        before={"brand": brand.code, **before},
        after={"brand": brand.code, "status": found.status, "earn_rate": str(found.earn_rate)},
    )
    return found


def list_programs(session: Session, *, actor: Principal) -> list[PointProgram]:
    """Every programme for the platform; a brand's own programmes for a brand."""
    repo = ProgramRepository(session)
    return repo.programs() if actor.scope.is_platform_wide else repo.programs_with_participation()


def get_program(session: Session, *, actor: Principal, code: str) -> PointProgram:
    """A programme the caller may see (a brand: one it takes or took part in), or 404."""
    program = program_by_code(session, code)
    if not actor.scope.is_platform_wide and participation_of(session, actor, program) is None:
        raise NotFound(f"Point programme '{code}' was not found.")
    return program


def program_out(session: Session, program: PointProgram) -> ProgramOut:
    """The programme with the participations visible in the session's scope."""
    repo = ProgramRepository(session)
    host = session.get(Brand, program.host_brand_id)
    return ProgramOut(
        id=program.id,
        code=program.code,
        name=program.name,
        host_brand_id=program.host_brand_id,
        host_brand=host.code if host is not None else "",
        point_type=_type_code(session, program),
        status=program.status,
        created_at=program.created_at,
        brands=[participation_out(p, b) for p, b in repo.participations(program.id)],
    )


def _type_code(session: Session, program: PointProgram) -> str:
    # The point type is a host row: read it through the host's scope.
    with host_scope(session, program):
        pt = ProgramRepository(session).point_type_by_id(program.point_type_id)
    return pt.code if pt is not None else ""


def participation_out(p: PointProgramBrand, brand: Brand) -> ParticipationOut:
    return ParticipationOut(
        brand_id=p.brand_id,
        brand=brand.code,
        role=p.role,
        status=p.status,
        earn_rate=Decimal(p.earn_rate).quantize(Decimal("0.0001")),
        joined_at=p.joined_at,
        left_at=p.left_at,
    )
