"""Queries behind data-subject requests (export, erasure) and PII key rotation.

Member-level queries go through the session's tenancy filter like every other repository. The
rotation queries work on whole tables through SQLAlchemy Core and are meant for a platform (unscoped)
session only: key rotation is an operator's job across every brand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from huiyuan.audit.models import AuditEntry
from huiyuan.members.models import Consent, CustomFieldUniqueValue, Verification

# Convention: every column whose name ends in ``_enc`` holds a Fernet token under the PII keys
# (``kit.pii``), on a table with an integer ``id`` primary key. Rotation finds them all this way, so a
# new encrypted column is rotated without anyone remembering to list it.
TOKEN_SUFFIX = "_enc"


def token_columns() -> list[tuple[Table, tuple[str, ...]]]:
    """Every ``(table, encrypted columns)`` pair of the schema, in dependency order."""
    from huiyuan.models import metadata

    out = []
    for table in metadata.sorted_tables:
        columns = tuple(c.name for c in table.columns if c.name.endswith(TOKEN_SUFFIX))
        if columns and "id" in table.columns:
            out.append((table, columns))
    return out


class PrivacyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def consents(self, member_id: int) -> list[Consent]:
        stmt = select(Consent).where(Consent.member_id == member_id).order_by(Consent.id)
        return list(self.session.scalars(stmt))

    def verifications(self, member_id: int) -> list[Verification]:
        stmt = select(Verification).where(Verification.member_id == member_id).order_by(Verification.id)
        return list(self.session.scalars(stmt))

    def audit_about(self, member_id: int) -> list[AuditEntry]:
        stmt = (
            select(AuditEntry)
            .where(AuditEntry.entity_type == "member", AuditEntry.entity_id == str(member_id))
            .order_by(AuditEntry.id)
        )
        return list(self.session.scalars(stmt))

    def unique_custom_values(self, member_id: int) -> list[CustomFieldUniqueValue]:
        stmt = select(CustomFieldUniqueValue).where(CustomFieldUniqueValue.member_id == member_id)
        return list(self.session.scalars(stmt))

    # -- key rotation (platform sessions only) ----------------------------------------------------

    def count_rows(self, table: Table) -> int:
        return int(self.session.scalar(select(func.count()).select_from(table)) or 0)

    def token_chunk(
        self, table: Table, columns: Sequence[str], *, after_id: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """``(id, *tokens)`` of the next ``limit`` rows after ``after_id``, in id order."""
        stmt = (
            select(table.c.id, *(table.c[c] for c in columns))
            .where(table.c.id > after_id)
            .order_by(table.c.id)
            .limit(limit)
        )
        return [tuple(row) for row in self.session.execute(stmt)]

    def set_tokens(self, table: Table, row_id: int, values: dict[str, str]) -> None:
        self.session.execute(update(table).where(table.c.id == row_id).values(**values))
