"""Business verbs on how a member is recognised: identifiers (OpenID, device, platform ids …),
physical cards (bind, report lost, replace) and the signed, expiring member QR code.

Identifiers are unique per brand and type (blind index, see ``kit.pii``). Phone and e-mail are
identifiers too, but they are owned by the member record (``members.service``): they change through
PATCH of the member, never here. Card-number identifiers follow the card's life and change only
through the card verbs. Every verb writes its audit row and outbox event in the caller's transaction
and never commits; values never reach audit rows or events unmasked.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import segno
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.identity_repository import IdentityRepository
from huiyuan.members.identity_schemas import CardOut, MemberSummary, QrTokenOut
from huiyuan.members.models import Member, MemberCard, MemberIdentifier
from huiyuan.members.repository import MemberRepository
from huiyuan.members.schemas import IdentifierOut
from huiyuan.members.service import attach_identifier, get_member
from huiyuan.outbox.service import emit
from huiyuan.settings import get_settings

# Identifiers that other verbs own: adding or removing them here would desynchronise the owner.
OWNED_ELSEWHERE = {
    "phone": "The phone number is part of the member record: change it with PATCH /api/v1/members/{id}.",
    "email": "The e-mail address is part of the member record: change it with PATCH /api/v1/members/{id}.",
    "card_number": "Card numbers follow the card: use /api/v1/members/{id}/cards (bind, lost, replace).",
}
QR_SALT = "member-qr"
QrFormat = Literal["png", "svg", "json"]


class IdentifierTaken(Conflict):
    code = "identifier-taken"
    title = "The identifier belongs to another member"


class IdentifierManagedElsewhere(Conflict):
    code = "identifier-managed-elsewhere"
    title = "This identifier is changed through another route"


class MemberClosed(Conflict):
    code = "member-closed"
    title = "The membership is closed"


class CardNumberTaken(Conflict):
    code = "card-number-taken"
    title = "The card number is already in use"


class CardStateConflict(Conflict):
    code = "card-state"
    title = "The card cannot change this way"


class QrInvalid(AppError):
    status = 422
    code = "qr-invalid"
    title = "The member code is not valid"


class QrExpired(AppError):
    status = 422
    code = "qr-expired"
    title = "The member code has expired"


# -- identifiers -----------------------------------------------------------------------------------


def _live_member(session: Session, member_id: int) -> Member:
    member = MemberRepository(session).get_for_update(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    if member.status == "closed":
        raise MemberClosed("A closed member cannot be changed.")
    return member


def _flush(session: Session, what: str) -> None:
    # The unique index is the final judge when two requests race for the same value.
    try:
        session.flush()
    except IntegrityError:
        raise IdentifierTaken(f"The {what} was taken concurrently.")


def identifier_out(ident: MemberIdentifier, *, show_pii: bool) -> IdentifierOut:
    """Response model of one identifier; the value is masked unless ``show_pii``."""
    value = pii.decrypt(ident.value_enc)
    return IdentifierOut(
        id=ident.id,
        type=ident.type,
        value=value if show_pii else (pii.mask(ident.type, value) or ""),
        source=ident.source,
        verified=ident.verified,
    )


def _masked(ident: MemberIdentifier) -> dict[str, Any]:
    return {
        "identifier_id": ident.id,
        "type": ident.type,
        "value": pii.mask(ident.type, pii.decrypt(ident.value_enc)),
        "source": ident.source,
    }


def add_identifier(
    session: Session, *, actor: Principal, member_id: int, type_: str, value: str, source: str | None
) -> tuple[MemberIdentifier, bool]:
    """Attach an identifier; ``(identifier, created)``. Re-adding the member's own value is a no-op."""
    member = _live_member(session, member_id)
    if not pii.normalise(type_, value):
        raise ValidationFailed("The value is empty.", errors=[field_error("value", "must not be blank")])
    repo = MemberRepository(session)
    owner = repo.identifier_owner(member.brand_id, type_, value)
    if owner is not None:
        if owner.member_id == member.id:
            return owner, False
        # Which member holds it is not said: the caller may not be allowed to learn it.
        raise IdentifierTaken(
            f"This {type_} identifier already belongs to another member.",
            errors=[field_error("value", "already in use", "identifier-taken")],
        )
    if type_ in OWNED_ELSEWHERE:
        raise IdentifierManagedElsewhere(OWNED_ELSEWHERE[type_])
    ident = attach_identifier(session, member, type_, value, source, repo)
    _flush(session, f"{type_} identifier")
    audit.record(
        session,
        actor=actor,
        action="member.identifier_added",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        after=_masked(ident),
    )
    emit(
        session,
        type="member.identifier_added",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, "identifier_id": ident.id, "type": type_, "source": source},
    )
    return ident, True


def remove_identifier(session: Session, *, actor: Principal, member_id: int, identifier_id: int) -> None:
    """Detach an identifier (not phone, e-mail or card numbers, which their owners manage)."""
    member = MemberRepository(session).get_for_update(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    ident = IdentityRepository(session).identifier(member.id, identifier_id)
    if ident is None:
        raise NotFound(f"Identifier {identifier_id} was not found on this member.")
    if ident.type in OWNED_ELSEWHERE:
        raise IdentifierManagedElsewhere(OWNED_ELSEWHERE[ident.type])
    before = _masked(ident)
    session.delete(ident)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="member.identifier_removed",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        before=before,
    )
    emit(
        session,
        type="member.identifier_removed",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, "identifier_id": identifier_id, "type": ident.type},
    )


def lookup_member(session: Session, *, actor: Principal, type_: str, value: str) -> Member:
    """The member holding exactly this identifier in the actor's brand (blind index), or 404."""
    brand_id = actor.scope.require_brand()
    owner = MemberRepository(session).identifier_owner(brand_id, type_, value)
    if owner is None:
        raise NotFound(f"No member has this {type_}.")
    return get_member(session, owner.member_id)


# -- physical cards --------------------------------------------------------------------------------


def card_out(card: MemberCard, *, show_pii: bool) -> CardOut:
    """Response model of a card; the number is masked unless ``show_pii``."""
    number = card.card_number if show_pii else (pii.mask("card_number", card.card_number) or "")
    return CardOut(
        id=card.id,
        member_id=card.member_id,
        card_number=number,
        status=card.status,  # type: ignore[arg-type]
        bound_at=card.bound_at,
        lost_at=card.lost_at,
        replaces_card_id=card.replaces_card_id,
    )


def _card_event(
    session: Session,
    *,
    actor: Principal,
    member: Member,
    action: str,
    payload: dict[str, Any],
    note: str | None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        after={k: v for k, v in payload.items() if k != "member_id"},
        note=note,
    )
    emit(
        session,
        type=action,
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload=payload,
    )


def _ensure_number_free(session: Session, member: Member, card_number: str) -> None:
    if IdentityRepository(session).card_by_number(member.brand_id, card_number) is not None:
        raise CardNumberTaken(
            "This card number was already issued; a lost or replaced card cannot be bound again.",
            errors=[field_error("card_number", "already issued", "card-number-taken")],
        )
    owner = MemberRepository(session).identifier_owner(member.brand_id, "card_number", card_number)
    if owner is not None and owner.member_id != member.id:
        raise CardNumberTaken(
            "This card number belongs to another member.",
            errors=[field_error("card_number", "already in use", "card-number-taken")],
        )


def _new_card(
    session: Session, member: Member, card_number: str, replaces: MemberCard | None = None
) -> MemberCard:
    card = MemberCard(
        brand_id=member.brand_id,
        member_id=member.id,
        card_number=card_number,
        status="active",
        bound_at=utcnow(),
        replaces_card_id=replaces.id if replaces else None,
    )
    session.add(card)
    attach_identifier(session, member, "card_number", card_number, "card", MemberRepository(session))
    _flush(session, "card number")
    return card


def _detach_card_identifier(session: Session, card: MemberCard) -> None:
    bidx = pii.blind_index("card_number", card.card_number)
    ident = IdentityRepository(session).identifier_by_bidx(card.member_id, "card_number", bidx)
    if ident is not None:
        session.delete(ident)
        session.flush()


def bind_card(
    session: Session, *, actor: Principal, member_id: int, card_number: str
) -> tuple[MemberCard, bool]:
    """Bind a physical card; ``(card, created)``. Binding the member's active card again is a no-op."""
    member = _live_member(session, member_id)
    ids = IdentityRepository(session)
    existing = ids.card_by_number(member.brand_id, card_number)
    if existing is not None and existing.member_id == member.id and existing.status == "active":
        return existing, False
    _ensure_number_free(session, member, card_number)
    if active := ids.active_cards(member.id):
        raise CardStateConflict(
            f"The member already holds active card {active[0].id}; replace it instead.",
            existing_card_id=active[0].id,
        )
    card = _new_card(session, member, card_number)
    _card_event(
        session,
        actor=actor,
        member=member,
        action="member.card_bound",
        payload={"member_id": member.id, "card_id": card.id},
        note=None,
    )
    return card, True


def report_card_lost(
    session: Session, *, actor: Principal, member_id: int, card_id: int, reason: str
) -> MemberCard:
    """Mark a card lost and drop its identifier so a found card identifies nobody. Idempotent."""
    member = MemberRepository(session).get_for_update(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    card = IdentityRepository(session).card(member.id, card_id, for_update=True)
    if card is None:
        raise NotFound(f"Card {card_id} was not found on this member.")
    if card.status == "lost":
        return card
    if card.status != "active":
        raise CardStateConflict("Only an active card can be reported lost.")
    card.status = "lost"
    card.lost_at = utcnow()
    _detach_card_identifier(session, card)
    _card_event(
        session,
        actor=actor,
        member=member,
        action="member.card_lost",
        payload={"member_id": member.id, "card_id": card.id},
        note=reason,
    )
    return card


def replace_card(
    session: Session, *, actor: Principal, member_id: int, card_id: int, new_card_number: str
) -> tuple[MemberCard, bool]:
    """Swap a card (active or lost) for a new one; ``(new card, created)``. A retry is a no-op."""
    member = _live_member(session, member_id)
    ids = IdentityRepository(session)
    old = ids.card(member.id, card_id, for_update=True)
    if old is None:
        raise NotFound(f"Card {card_id} was not found on this member.")
    if old.status == "replaced":
        successor = ids.replacement_of(old.id)
        if successor is not None and successor.card_number == new_card_number:
            return successor, False
        raise CardStateConflict("This card was already replaced by another card.")
    _ensure_number_free(session, member, new_card_number)
    old.status = "replaced"
    _detach_card_identifier(session, old)
    new = _new_card(session, member, new_card_number, replaces=old)
    _card_event(
        session,
        actor=actor,
        member=member,
        action="member.card_replaced",
        payload={"member_id": member.id, "card_id": new.id, "replaces_card_id": old.id},
        note=None,
    )
    return new, True


def list_cards(session: Session, member_id: int) -> list[MemberCard]:
    """Every card the member has held, oldest first."""
    member = get_member(session, member_id)
    return IdentityRepository(session).cards(member.id)


# -- member QR code --------------------------------------------------------------------------------


class _ClockSigner(TimestampSigner):
    # Signs and checks age with the injected clock, so expiry is testable to the second.
    def get_timestamp(self) -> int:
        return int(utcnow().timestamp())


def _qr_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret_key, salt=QR_SALT, signer=_ClockSigner)


@dataclass(frozen=True)
class MemberQr:
    token: str
    expires_at: datetime


def issue_member_qr(member: Member) -> MemberQr:
    """A signed code naming brand and member, valid for ``member_qr_ttl_seconds``."""
    if member.status == "closed":
        raise MemberClosed("A closed membership has no member code.")
    now = utcnow()
    # The nonce makes every code distinct, so a screenshot is told apart from a fresh code in logs.
    payload = {"b": member.brand_id, "m": member.id, "n": secrets.token_urlsafe(6)}
    token = _qr_serializer().dumps(payload)
    assert isinstance(token, str)
    ttl = get_settings().member_qr_ttl_seconds
    return MemberQr(token=token, expires_at=now.replace(microsecond=0) + timedelta(seconds=ttl))


def render_qr(token: str, fmt: Literal["png", "svg"]) -> tuple[bytes, str]:
    """The token drawn as a QR code: ``(bytes, media type)``."""
    code = segno.make(token, error="m", micro=False)
    buf = io.BytesIO()
    if fmt == "png":
        code.save(buf, kind="png", scale=6, border=4)
        return buf.getvalue(), "image/png"
    code.save(buf, kind="svg", scale=6, border=4, xmldecl=True, title="member code")
    return buf.getvalue(), "image/svg+xml"


def qr_document(qr: MemberQr, fmt: QrFormat) -> tuple[bytes, str]:
    """The code as PNG, SVG or JSON (token + expiry): ``(bytes, media type)``."""
    if fmt == "json":
        body = QrTokenOut(token=qr.token, expires_at=qr.expires_at).model_dump_json()
        return body.encode(), "application/json"
    return render_qr(qr.token, fmt)


def verify_member_qr(session: Session, *, actor: Principal, token: str) -> Member:
    """The member a scanned code names, if it is genuine, fresh, of the actor's brand and open."""
    brand_id = actor.scope.require_brand()
    serializer = _qr_serializer()
    try:
        data = serializer.loads(token, max_age=get_settings().member_qr_ttl_seconds)
    except SignatureExpired as exc:
        # A stale code of another brand is answered like garbage: nothing about it leaks.
        stale = serializer.load_payload(exc.payload) if exc.payload is not None else None
        if isinstance(stale, dict) and stale.get("b") == brand_id:
            raise QrExpired("The member code has expired; ask the member to refresh it.")
        raise QrInvalid()
    except BadSignature:
        raise QrInvalid()
    if not isinstance(data, dict) or data.get("b") != brand_id or not isinstance(data.get("m"), int):
        raise QrInvalid()
    member = MemberRepository(session).get(data["m"])
    if member is None or member.status == "closed":
        raise QrInvalid()
    return member


def member_summary(member: Member) -> MemberSummary:
    """What staff see after a scan: no unmasked PII."""
    phone = pii.mask("phone", pii.decrypt(member.phone_enc)) if member.phone_enc else None
    return MemberSummary(
        id=member.id, member_number=member.member_number, name=member.name, status=member.status, phone=phone
    )
