"""Business verbs on members: enroll, update, close, look up. Each verb writes its audit row and
outbox event in the caller's transaction and never commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members import consent, custom_fields
from huiyuan.members.models import Member, MemberIdentifier
from huiyuan.members.repository import MemberFilter, MemberRepository
from huiyuan.members.schemas import IdentifierOut, MemberClose, MemberEnroll, MemberOut, MemberUpdate
from huiyuan.outbox.service import emit
from huiyuan.tenancy.repository import TenancyRepository

AUDITED_FIELDS = (
    "status",
    "name",
    "gender",
    "birthday",
    "province",
    "city",
    "occupation",
    "education",
    "income_band",
    "interests",
    "custom",
    "enroll_channel",
    "enroll_source",
)


def snapshot(member: Member) -> dict[str, Any]:
    """Audit-safe view of a member: PII appears only as a changed/unchanged fingerprint."""
    out: dict[str, Any] = {f: getattr(member, f) for f in AUDITED_FIELDS}
    out["birthday"] = member.birthday.isoformat() if member.birthday else None
    out["phone"] = pii.mask("phone", pii.decrypt(member.phone_enc)) if member.phone_enc else None
    out["email"] = pii.mask("email", pii.decrypt(member.email_enc)) if member.email_enc else None
    return out


def get_member(session: Session, member_id: int) -> Member:
    """The member with this id in the caller's scope, or 404."""
    member = MemberRepository(session).get(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def attach_identifier(
    session: Session, member: Member, type_: str, value: str, source: str | None, repo: MemberRepository
) -> MemberIdentifier:
    """Give ``member`` an identifier (idempotent for its owner; 409 if another member holds it)."""
    owner = repo.identifier_owner(member.brand_id, type_, value)
    if owner is not None:
        if owner.member_id == member.id:
            return owner
        raise Conflict(
            f"The {type_} identifier already belongs to another member.",
            errors=[field_error(f"identifiers.{type_}", "already in use", "identifier-taken")],
            existing_member_id=owner.member_id,
        )
    ident = MemberIdentifier(
        brand_id=member.brand_id,
        member_id=member.id,
        type=type_,
        value_enc=pii.encrypt(pii.normalise(type_, value)),
        value_bidx=pii.blind_index(type_, value),
        source=source,
    )
    session.add(ident)
    return ident


def _set_contact(
    session: Session, member: Member, kind: str, value: str | None, repo: MemberRepository
) -> None:
    """Phone and e-mail live on the member (encrypted) and as identifiers (for uniqueness/lookup)."""
    old_bidx = getattr(member, f"{kind}_bidx")
    new_bidx = pii.blind_index(kind, value) if value else None
    if old_bidx == new_bidx:
        return
    if old_bidx:
        for ident in repo.identifiers([member.id]).get(member.id, []):
            if ident.type == kind and ident.value_bidx == old_bidx:
                session.delete(ident)
        session.flush()
    setattr(member, f"{kind}_enc", pii.encrypt(pii.normalise(kind, value)) if value else None)
    setattr(member, f"{kind}_bidx", new_bidx)
    if value:
        attach_identifier(session, member, kind, value, "profile", repo)


def _wanted_identifiers(data: MemberEnroll) -> list[tuple[str, str, str | None]]:
    """Every identifier an enrollment asks for, phone and e-mail included, without repeats."""
    wanted: dict[tuple[str, str], tuple[str, str, str | None]] = {}
    if data.phone:
        wanted[("phone", pii.blind_index("phone", data.phone))] = ("phone", data.phone, "profile")
    if data.email:
        wanted[("email", pii.blind_index("email", data.email))] = ("email", data.email, "profile")
    for ident in data.identifiers:
        if ident.type in ("phone", "email"):
            continue  # contact identifiers come from the phone/email fields only
        wanted.setdefault(
            (ident.type, pii.blind_index(ident.type, ident.value)), (ident.type, ident.value, ident.source)
        )
    return list(wanted.values())


def enroll_member(session: Session, *, actor: Principal, data: MemberEnroll) -> Member:
    """Create a member (or prospect) with identifiers, custom values and the enrollment source."""
    brand_id = actor.scope.require_brand()
    repo = MemberRepository(session)
    tenancy = TenancyRepository(session)
    wanted = _wanted_identifiers(data)

    # Checks read only; keeping autoflush off saves a flush before every lookup (the import path
    # enrolls thousands of members in one transaction).
    with session.no_autoflush:
        brand = tenancy.brand(brand_id)
        # A retried create with the same natural key returns a conflict naming the first result.
        owners = repo.identifier_owners(brand_id, [(t, v) for t, v, _ in wanted])
        for type_, _value, _source in wanted:
            if type_ in owners:
                field = type_ if type_ in ("phone", "email") else f"identifiers.{type_}"
                raise Conflict(
                    f"A member with this {type_} already exists.",
                    errors=[field_error(field, "already in use", "identifier-taken")],
                    existing_member_id=owners[type_],
                )
        store_id = None
        if data.enroll_store_code:
            store = tenancy.store_by_code(brand_id, data.enroll_store_code)
            if store is None:
                raise ValidationFailed(
                    "Unknown store.",
                    errors=[field_error("enroll_store_code", "no such store", "unknown-store")],
                )
            store_id = store.id
        referrer_id = None
        if data.referrer_member_number:
            referrer = repo.by_number(brand_id, data.referrer_member_number)
            if referrer is None:
                raise ValidationFailed(
                    "Unknown referrer.",
                    errors=[field_error("referrer_member_number", "no such member", "unknown-member")],
                )
            referrer_id = referrer.id
        if data.member_number and repo.by_number(brand_id, data.member_number) is not None:
            raise Conflict(
                "This member number is taken.",
                errors=[field_error("member_number", "already in use", "taken")],
            )
        custom = custom_fields.validate_values(
            session, brand_id, data.custom or {}, existing={}, member=None, creating=True
        )
        number = data.member_number or repo.next_member_number(brand)

    member = Member(
        brand_id=brand_id,
        member_number=number,
        status=data.status,
        name=data.name,
        gender=data.gender or "unknown",
        birthday=data.birthday,
        phone_enc=pii.encrypt(data.phone) if data.phone else None,
        phone_bidx=pii.blind_index("phone", data.phone) if data.phone else None,
        email_enc=pii.encrypt(pii.normalise("email", data.email)) if data.email else None,
        email_bidx=pii.blind_index("email", data.email) if data.email else None,
        province=data.province,
        city=data.city,
        occupation=data.occupation,
        education=data.education,
        income_band=data.income_band,
        interests=data.interests or [],
        enroll_channel=data.enroll_channel,
        enroll_source=data.enroll_source,
        enroll_store_id=store_id,
        referrer_member_id=referrer_id,
        join_condition=data.join_condition,
        enrolled_at=data.enrolled_at or utcnow(),
        custom=custom,
    )
    session.add(member)
    try:
        session.flush()
        session.add_all(
            MemberIdentifier(
                brand_id=brand_id,
                member_id=member.id,
                type=type_,
                value_enc=pii.encrypt(pii.normalise(type_, value)),
                value_bidx=pii.blind_index(type_, value),
                source=source,
            )
            for type_, value, source in wanted
        )
        custom_fields.sync_unique_values(session, member)
        session.flush()
    except IntegrityError:
        # Another writer took an identifier or the number between our check and our insert.
        raise Conflict("An identifier or the member number was taken concurrently; retry.")

    audit.record(
        session,
        actor=actor,
        action="member.enrolled",
        entity_type="member",
        entity_id=member.id,
        brand_id=brand_id,
        before=None,
        after=snapshot(member),
    )
    emit(
        session,
        type="member.enrolled",
        brand_id=brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={
            "member_id": member.id,
            "member_number": member.member_number,
            "status": member.status,
            "channel": member.enroll_channel,
            "source": member.enroll_source,
            "store_id": store_id,
            "enrolled_at": member.enrolled_at.isoformat(),
        },
    )
    for given in data.consents:
        consent.record_consent(
            session,
            actor=actor,
            member_id=member.id,
            purpose=given.purpose,
            channel=given.channel,
            granted=given.granted,
            source=given.source or f"enrollment:{member.enroll_channel}",
            evidence=given.evidence,
        )
    return member


def update_member(session: Session, *, actor: Principal, member_id: int, data: MemberUpdate) -> Member:
    """Change a member's attributes; only fields present in the request change."""
    repo = MemberRepository(session)
    member = repo.get_for_update(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    if member.status == "closed":
        raise Conflict("A closed member cannot be changed.")
    if data.expected_version is not None and data.expected_version != member.version:
        raise Conflict(
            "The member was changed by someone else; reload and retry.",
            errors=[field_error("expected_version", f"current version is {member.version}", "stale")],
        )
    before = snapshot(member)
    sent = data.model_dump(exclude_unset=True, exclude={"expected_version"})
    for field in (
        "name",
        "gender",
        "birthday",
        "province",
        "city",
        "occupation",
        "education",
        "income_band",
        "interests",
        "status",
    ):
        if field in sent:
            setattr(member, field, sent[field] if sent[field] is not None or field != "gender" else "unknown")
    if "phone" in sent:
        _set_contact(session, member, "phone", sent["phone"], repo)
    if "email" in sent:
        _set_contact(session, member, "email", sent["email"], repo)
    if "custom" in sent and sent["custom"] is not None:
        member.custom = custom_fields.validate_values(
            session,
            member.brand_id,
            sent["custom"],
            existing=dict(member.custom),
            member=member,
            creating=False,
        )
        custom_fields.sync_unique_values(session, member)
    after = snapshot(member)
    if after == before:
        return member
    member.version += 1
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="member.updated",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        before=before,
        after=after,
    )
    changed = sorted(audit.diff(before, after))
    emit(
        session,
        type="member.updated",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, "changed": changed, "version": member.version},
    )
    return member


def close_member(session: Session, *, actor: Principal, member_id: int, data: MemberClose) -> Member:
    """Close a membership. Idempotent: closing a closed member returns it unchanged."""
    member = MemberRepository(session).get_for_update(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    if member.status == "closed":
        return member
    before = snapshot(member)
    member.status = "closed"
    member.closed_at = utcnow()
    member.close_reason = data.reason
    member.version += 1
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="member.closed",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        before=before,
        after=snapshot(member),
        note=data.reason,
    )
    emit(
        session,
        type="member.closed",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, "reason": data.reason},
    )
    return member


def list_members(
    session: Session, *, filters: MemberFilter, after_id: int | None, limit: int
) -> list[Member]:
    """Members in the caller's scope matching ``filters``, ordered by id."""
    return MemberRepository(session).list(filters, after_id=after_id, limit=limit)


def to_out(session: Session, members: list[Member], *, show_pii: bool) -> list[MemberOut]:
    """Response models for members, with identifiers; PII masked unless ``show_pii``."""
    idents = MemberRepository(session).identifiers([m.id for m in members])

    def reveal(kind: str, token: str | None) -> str | None:
        if token is None:
            return None
        value = pii.decrypt(token)
        return value if show_pii else pii.mask(kind, value)

    out = []
    for m in members:
        out.append(
            MemberOut(
                id=m.id,
                brand_id=m.brand_id,
                member_number=m.member_number,
                status=m.status,
                name=m.name,
                gender=m.gender,
                birthday=m.birthday,
                phone=reveal("phone", m.phone_enc),
                email=reveal("email", m.email_enc),
                province=m.province,
                city=m.city,
                occupation=m.occupation,
                education=m.education,
                income_band=m.income_band,
                interests=list(m.interests or []),
                enroll_channel=m.enroll_channel,
                enroll_source=m.enroll_source,
                enroll_store_id=m.enroll_store_id,
                join_condition=m.join_condition,
                enrolled_at=m.enrolled_at,
                custom=dict(m.custom or {}),
                identifiers=[
                    IdentifierOut(
                        id=i.id,
                        type=i.type,
                        value=reveal(i.type, i.value_enc) or "",
                        source=i.source,
                        verified=i.verified,
                    )
                    for i in idents.get(m.id, [])
                ],
                closed_at=m.closed_at,
                close_reason=m.close_reason,
                version=m.version,
                created_at=m.created_at,
                updated_at=m.updated_at,
            )
        )
    return out
