"""Member export to CSV (streamed): the caller's brand only (tenancy is the session's), PII masked
unless the caller has ``members:pii``. Columns use the import's names, so an unmasked export can be
imported back (and re-importing it changes nothing).

Owns the export's columns and paging (keyset, ``EXPORT_PAGE`` members per query). Must not hold a
whole export in memory, and must not read members other than through the members repository.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.scope import Principal
from huiyuan.members import service
from huiyuan.members.import_reader import IDENTIFIER_COLUMNS
from huiyuan.members.repository import MemberFilter, MemberRepository
from huiyuan.members.schemas import MemberOut
from huiyuan.tenancy.repository import TenancyRepository

EXPORT_PAGE = 1000
BASE_COLUMNS = (
    "member_number",
    "status",
    "name",
    "gender",
    "birthday",
    "phone",
    "email",
    "province",
    "city",
    "occupation",
    "education",
    "income_band",
    "interests",
    "enroll_channel",
    "enroll_source",
    "enroll_store_code",
    "enrolled_at",
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "|".join(_text(v) for v in value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _row(out: MemberOut, store_codes: dict[int, str], custom_keys: list[str]) -> list[str]:
    idents: dict[str, list[str]] = {}
    for ident in out.identifiers:
        if ident.type in IDENTIFIER_COLUMNS:
            idents.setdefault(ident.type, []).append(ident.value)
    values: dict[str, Any] = out.model_dump(include=set(BASE_COLUMNS))
    values["enroll_store_code"] = store_codes.get(out.enroll_store_id or 0)
    row = [_text(values.get(c)) for c in BASE_COLUMNS]
    row += ["|".join(idents.get(t, [])) for t in IDENTIFIER_COLUMNS]
    row += [_text(out.custom.get(k)) for k in custom_keys]
    return row


def record_export(session: Session, *, actor: Principal, filters: MemberFilter) -> None:
    """Audit that the caller exported members (with which filters, PII shown or not)."""
    actor.require("members:read")
    brand_id = actor.scope.require_brand()
    audit.record(
        session,
        actor=actor,
        action="members.exported",
        entity_type="brand",
        entity_id=brand_id,
        brand_id=brand_id,
        after={
            "pii": actor.has("members:pii"),
            "filters": {k: str(v) for k, v in vars(filters).items() if v not in (None, {}, "")},
        },
    )


def iter_members_csv(session: Session, actor: Principal, filters: MemberFilter) -> Iterator[str]:
    """The members matching ``filters`` as CSV text chunks (BOM and header first, then a page at a time)."""
    actor.require("members:read")
    brand_id = actor.scope.require_brand()
    show_pii = actor.has("members:pii")
    repo = MemberRepository(session)
    custom_keys = [d.key for d in repo.custom_definitions(brand_id, include_retired=True)]
    store_codes = {s.id: s.code for s in TenancyRepository(session).stores(brand_id)}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*BASE_COLUMNS, *IDENTIFIER_COLUMNS, *(f"custom.{k}" for k in custom_keys)])
    yield "\ufeff" + _drain(buffer)  # the BOM makes Excel read the file as UTF-8 (Chinese names)
    after: int | None = None
    while members := repo.list(filters, after_id=after, limit=EXPORT_PAGE):
        for out in service.to_out(session, members, show_pii=show_pii):
            writer.writerow(_row(out, store_codes, custom_keys))
        after = members[-1].id
        session.expunge_all()  # keep memory flat however many pages there are
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
