"""Data-subject requests and PII key rotation.

Owns: the export of everything held about one member (one JSON document, PII decrypted), erasure
(PII removed for good while the member row, its id and every ledger/order row stay so statistics and
balances remain consistent), and the chunked re-encryption of every Fernet token under the newest PII
key. Other domains contribute to exports and erasures through small registries
(``register_exporter`` / ``register_eraser``) instead of this module reaching into their tables.
Must not commit (except ``rotate_pii_tokens``, which is an operator job that commits chunk by chunk).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from pydantic_core import to_jsonable_python
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit import idempotency, pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import NotFound
from huiyuan.kit.scope import Principal
from huiyuan.members.identity_repository import IdentityRepository
from huiyuan.members.privacy_repository import PrivacyRepository, token_columns
from huiyuan.members.repository import MemberRepository
from huiyuan.members.service import get_member
from huiyuan.outbox.service import emit
from huiyuan.settings import get_settings

EXPORT_FORMAT = "huiyuan.member-export/1"
ERASED_CARD_PREFIX = "ERASED-"
# An export holds every order; the bound only stops a runaway account from exhausting memory.
EXPORT_ORDER_LIMIT = 100_000
# Audit fields that never carry personal data; every other value about an erased member is redacted.
AUDIT_SAFE_KEYS = frozenset(
    {"status", "gender", "enroll_channel", "identifier_id", "type", "source", "card_id", "replaces_card_id",
     "erased", "_note"}
)  # fmt: skip

Exporter = Callable[[Session, int], list[Any] | dict[str, Any]]
Eraser = Callable[[Session, int], None]
_exporters: dict[str, Exporter] = {}
_erasers: dict[str, Eraser] = {}
_wired = False


def register_exporter(name: str, fn: Exporter) -> None:
    """Let a domain add its rows to member exports under ``name`` (``fn(session, member_id)``)."""
    _exporters[name] = fn


def register_eraser(name: str, fn: Eraser) -> None:
    """Let a domain remove the PII it holds about a member when the member is erased."""
    _erasers[name] = fn


def _forget_idempotent_responses(session: Session, member_id: int) -> None:
    # Stored first responses of retried enrollments are encrypted copies of the member record.
    idempotency.forget(session, resource_type="member", resource_id=member_id)


register_eraser("idempotency", _forget_idempotent_responses)


def exporters() -> dict[str, Exporter]:
    return dict(_exporters)


def _wire_known_domains() -> None:
    # Domains that do not import this module are wired here, if they provide the hook. Done at the
    # first export rather than at import time, so importing this module never drags other domains in.
    global _wired
    if _wired:
        return
    _wired = True
    try:
        from huiyuan.orders import repository as orders_repository
    except ImportError:
        return
    orders_for_member = getattr(orders_repository, "orders_for_member", None)
    if not callable(orders_for_member):
        return

    def export_orders(session: Session, member_id: int) -> list[Any]:
        orders = orders_for_member(session, member_id, limit=EXPORT_ORDER_LIMIT)
        return [_columns(o, exclude=("request_hash",)) for o in orders]

    register_exporter("orders", export_orders)


def _columns(row: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mapped row as ``{column: value}`` (the shape exports use for other domains' rows)."""
    return {c.name: getattr(row, c.key) for c in row.__table__.columns if c.name not in exclude}


# -- export ----------------------------------------------------------------------------------------


def _decrypt(token: str | None) -> str | None:
    return pii.decrypt(token) if token else None


def export_member(session: Session, *, actor: Principal, member_id: int) -> dict[str, Any]:
    """Everything held about one member, PII decrypted, as a JSON-ready document."""
    actor.require("members:pii")
    _wire_known_domains()
    member = get_member(session, member_id)
    repo = PrivacyRepository(session)
    idents = MemberRepository(session).identifiers([member.id]).get(member.id, [])
    record = _columns(member)
    for kind in ("phone", "email"):
        record.pop(f"{kind}_enc")
        record.pop(f"{kind}_bidx")
        record[kind] = _decrypt(getattr(member, f"{kind}_enc"))
    doc: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow(),
        "member": record,
        "identifiers": [
            {
                "id": i.id,
                "type": i.type,
                "value": pii.decrypt(i.value_enc),
                "source": i.source,
                "verified": i.verified,
                "created_at": i.created_at,
            }
            for i in idents
        ],
        "cards": [
            {
                "id": c.id,
                "card_number": c.card_number,
                "status": c.status,
                "bound_at": c.bound_at,
                "lost_at": c.lost_at,
                "replaces_card_id": c.replaces_card_id,
            }
            for c in IdentityRepository(session).cards(member.id)
        ],
        "consents": [
            {
                "id": c.id,
                "purpose": c.purpose,
                "channel": c.channel,
                "granted": c.granted,
                "at": c.at,
                "source": c.source,
                "evidence": c.evidence,
            }
            for c in repo.consents(member.id)
        ],
        "verifications": [
            {"id": v.id, "kind": v.kind, "status": v.status, "evidence": v.evidence, "at": v.at, "by": v.by}
            for v in repo.verifications(member.id)
        ],
        "audit": [
            {
                "id": e.id,
                "at": e.at,
                "action": e.action,
                "actor_kind": e.actor_kind,
                "actor_name": e.actor_name,
                "changes": e.changes,
            }
            for e in repo.audit_about(member.id)
        ],
    }
    for name, fn in sorted(_exporters.items()):
        doc[name] = fn(session, member.id)
    return dict(to_jsonable_python(doc))


def record_export(session: Session, *, actor: Principal, member_id: int) -> None:
    """Audit that someone exported a member's data (who and when; never the data)."""
    member = get_member(session, member_id)
    audit.record(
        session,
        actor=actor,
        action="member.exported",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        note="data-subject export",
    )


# -- erasure ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    member_id: int
    member_number: str
    status: str
    erased_at: datetime


def _redact(changes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key in AUDIT_SAFE_KEYS:
            out[key] = value
        elif isinstance(value, list):
            out[key] = [audit.REDACTED if v is not None else None for v in value]
        else:
            out[key] = audit.REDACTED
    return out


def erase_member(session: Session, *, actor: Principal, member_id: int, reason: str) -> Erasure:
    """Remove a member's PII for good; the row, its id, ledgers and orders stay. Idempotent."""
    actor.require("members:pii")
    member = MemberRepository(session).get_for_update(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    if member.erased_at is not None:
        return Erasure(member.id, member.member_number, member.status, member.erased_at)
    repo = PrivacyRepository(session)
    now = utcnow()
    before_status = member.status

    for ident in MemberRepository(session).identifiers([member.id]).get(member.id, []):
        session.delete(ident)
    for row in repo.unique_custom_values(member.id):
        session.delete(row)
    for card in IdentityRepository(session).cards(member.id):
        # Unique per brand, so each gets its own random, irreversible stand-in.
        card.card_number = ERASED_CARD_PREFIX + secrets.token_hex(16)
    for verification in repo.verifications(member.id):
        verification.evidence = {}
    for consent in repo.consents(member.id):
        consent.evidence = {}
    # Erasure is the one exception to an append-only audit log: who did what stays, the values go.
    for entry in repo.audit_about(member.id):
        entry.changes = _redact(dict(entry.changes or {}))
    for fn in _erasers.values():
        fn(session, member.id)

    # Coarse attributes (gender, province, enrollment channel/store/date) stay for statistics.
    member.name = None
    member.phone_enc = member.phone_bidx = None
    member.email_enc = member.email_bidx = None
    member.birthday = None
    member.city = None
    member.occupation = member.education = member.income_band = None
    member.interests = []
    member.custom = {}
    member.status = "closed"
    member.closed_at = member.closed_at or now
    member.close_reason = "erased"
    member.erased_at = now
    member.version += 1
    session.flush()

    audit.record(
        session,
        actor=actor,
        action="member.erased",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        before={"status": before_status, "erased": False},
        after={"status": "closed", "erased": True},
        note=reason,
    )
    emit(
        session,
        type="member.erased",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, "erased_at": now.isoformat()},
    )
    return Erasure(member.id, member.member_number, member.status, now)


# -- key rotation ----------------------------------------------------------------------------------

ProgressFn = Callable[[str, int, int], None]  # (table, rows just done, total rows of the table)


class UndecryptableToken(RuntimeError):
    """A token no configured key opens: a key was dropped before rotation finished."""


def rotate_pii_tokens(
    db: Database, progress: ProgressFn | None = None, *, chunk_size: int = 500
) -> dict[str, int]:
    """Re-encrypt every Fernet token under the newest PII key, one committed chunk at a time.

    Resumable: a token already under the newest key is left alone, so a rerun after an interruption
    only does what is left. Returns the number of rows rewritten per table.
    """
    newest = Fernet(get_settings().fernet_keys()[0])

    def current(token: str) -> bool:
        try:
            newest.decrypt(token.encode())
            return True
        except InvalidToken:
            return False

    rewritten: dict[str, int] = {}
    for table, columns in token_columns():
        with db.unit_of_work(write=False) as s:
            total = PrivacyRepository(s).count_rows(table)
        if progress:
            progress(table.name, 0, total)
        after_id, count = 0, 0
        while True:
            with db.unit_of_work() as s:
                repo = PrivacyRepository(s)
                rows = repo.token_chunk(table, columns, after_id=after_id, limit=chunk_size)
                for row_id, *tokens in rows:
                    values = {}
                    for column, token in zip(columns, tokens, strict=True):
                        if token and not current(token):
                            try:
                                values[column] = pii.rotate(token)
                            except InvalidToken:
                                raise UndecryptableToken(
                                    f"{table.name}.{column} of row {row_id} opens with none of the keys"
                                )
                    if values:
                        repo.set_tokens(table, row_id, values)
                        count += 1
            if not rows:
                break
            after_id = rows[-1][0]
            if progress:
                progress(table.name, len(rows), total)
        rewritten[table.name] = count
    return rewritten
