"""Writing prepared import rows: one transaction per chunk, one SAVEPOINT per row, de-duplication
on identifiers (in the file and against the brand's members), and the running counts of a run.

Every create goes through ``members.service.enroll_member`` and every fill-in through
``update_member`` / ``identity.add_identifier``: this module decides *whether* a row creates,
fills or is skipped, never how a member is validated or stored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.kit import pii
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError, NotFound
from huiyuan.kit.scope import Principal
from huiyuan.members import identity, service
from huiyuan.members.import_reader import Column
from huiyuan.members.import_repository import ImportRepository
from huiyuan.members.import_rows import PreparedRow, RowError, RowMapper
from huiyuan.members.models import ImportRowError, ImportRun, Member
from huiyuan.members.schemas import IdentifierIn, MemberEnroll, MemberUpdate

TRANSACTION_SECONDS = 2.0
_FILL_FIELDS = ("name", "birthday", "province", "city", "occupation", "education", "income_band")


@dataclass
class ImportSummary:
    """Counts of one import run; in a dry run ``created``/``updated`` mean "would create/update"."""

    run_id: int
    dry_run: bool
    status: str = "running"
    total_rows: int = 0
    processed_rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    elapsed_seconds: float = 0.0
    error: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.processed_rows / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def message(self) -> str:
        verb = "would create" if self.dry_run else "created"
        return (
            f"{self.processed_rows} rows: {self.created} {verb}, {self.updated} updated, "
            f"{self.skipped} skipped, {self.failed} failed"
        )


def apply_counts(run: ImportRun, summary: ImportSummary) -> None:
    run.processed_rows = summary.processed_rows
    run.total_rows = max(summary.total_rows, summary.processed_rows)
    run.created, run.updated = summary.created, summary.updated
    run.skipped, run.failed = summary.skipped, summary.failed


class ChunkWriter:
    """Writes chunks of prepared rows: one transaction per chunk, one SAVEPOINT per row."""

    def __init__(
        self,
        db: Database,
        actor: Principal,
        summary: ImportSummary,
        *,
        on_duplicate: str,
        columns: list[Column | None],
    ) -> None:
        self.db = db
        self.actor = actor
        self.brand_id = actor.scope.require_brand()
        self.summary = summary
        self.on_duplicate = on_duplicate
        self.columns = columns
        # First row of each identifier seen in this file; keys are shortened blind indexes (80 bits
        # is ample against collisions and keeps a million-row file's memory modest).
        self.seen: dict[tuple[str, str], int] = {}

    def dedupe_in_file(self, row: PreparedRow, mapper: RowMapper) -> PreparedRow:
        if row.errors or row.data is None:
            return row
        short = [(kind, key if kind == "member_number" else key[:20]) for kind, key in row.keys]
        for (kind, _), skey in zip(row.keys, short, strict=True):
            first = self.seen.get(skey)
            if first is not None:
                row.errors.append(
                    RowError(
                        mapper.header_of.get(kind, kind), "duplicate-in-file", f"duplicate of row {first}"
                    )
                )
                return row
        for skey in short:
            self.seen[skey] = row.number
        return row

    def write(self, rows: list[PreparedRow], mapper: RowMapper) -> None:
        """Write a chunk; a chunk that takes longer than ``TRANSACTION_SECONDS`` is committed in
        parts, because on SQLite an open write transaction makes every other writer wait."""
        done = 0
        while done < len(rows):
            done = self._write_part(rows, done, mapper)

    def _write_part(self, rows: list[PreparedRow], start: int, mapper: RowMapper) -> int:
        errors: list[ImportRowError] = []
        session = self.db.session(self.actor.scope, write=True)
        began = time.monotonic()
        try:
            repo = ImportRepository(session)
            keys = [k for r in rows[start:] if not r.errors for k in r.keys]
            owners = repo.owners_by_bidx(self.brand_id, [k for k in keys if k[0] != "member_number"])
            numbers = repo.members_by_number(
                self.brand_id, [v for kind, v in keys if kind == "member_number"]
            )
            members: dict[int, Member] = {}
            if self.on_duplicate == "update":  # one statement for the chunk's matched members
                members = repo.members_by_ids([*owners.values(), *numbers.values()])
            index = start
            while index < len(rows):
                row = rows[index]
                index += 1
                if not row.errors:
                    self._write_row(session, row, mapper, owners, numbers, members)
                self.summary.processed_rows += 1
                if row.errors:
                    self.summary.failed += 1
                    errors += self._error_rows(row)
                if time.monotonic() - began > TRANSACTION_SECONDS:
                    break
            if self.summary.dry_run:
                session.rollback()
                with self.db.unit_of_work(self.actor.scope) as record:
                    self._record(record, errors)
            else:
                self._record(session, errors)
                session.commit()
            return index
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _record(self, session: Session, errors: list[ImportRowError]) -> None:
        _record_counts(session, self.summary)
        session.add_all(errors)

    def _write_row(
        self,
        session: Session,
        row: PreparedRow,
        mapper: RowMapper,
        owners: dict[str, int],
        numbers: dict[str, int],
        members: dict[int, Member],
    ) -> None:
        assert row.data is not None
        matches = {numbers.get(v) if kind == "member_number" else owners.get(v) for kind, v in row.keys} - {
            None
        }
        if len(matches) > 1:
            ids = ", ".join(str(m) for m in sorted(m for m in matches if m is not None))
            row.errors.append(
                RowError(
                    None, "ambiguous-match", f"the row's identifiers belong to different members ({ids})"
                )
            )
            return
        plan: FillPlan | None = None
        if matches:
            member = members.get(matches.pop() or 0) if self.on_duplicate == "update" else None
            plan = plan_fill(member, row.data, owners) if member is not None else None
            if not plan:  # nothing to add: no savepoint, no statement
                self.summary.skipped += 1
                return
        try:
            with session.begin_nested():
                if plan is None:
                    service.enroll_member(session, actor=self.actor, data=row.data)
                    outcome = "created"
                else:
                    outcome = "updated" if fill_in(session, self.actor, plan) else "skipped"
            # Counted only once the savepoint is released: its final flush may still refuse the row.
            setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
        except AppError as exc:
            if not exc.errors:
                row.errors.append(RowError(None, exc.code, exc.detail))
            for e in exc.errors:
                row.errors.append(
                    RowError(
                        mapper.error_column(e.get("field")), e.get("code", exc.code), e.get("message", "")
                    )
                )
        except IntegrityError:
            row.errors.append(RowError(None, "conflict", "the row conflicts with a member written meanwhile"))

    def _error_rows(self, row: PreparedRow) -> list[ImportRowError]:
        plain: dict[str, Any] = {}
        secret: dict[str, Any] = {}
        for col, text in zip(self.columns, row.cells, strict=False):
            if col is not None and text is not None:
                (secret if col.is_pii else plain)[col.header] = text
        token = pii.encrypt(json.dumps(secret, ensure_ascii=False)) if secret else None
        return [
            ImportRowError(
                brand_id=self.brand_id,
                import_run_id=self.summary.run_id,
                row_number=row.number,
                column=(e.column or None) and e.column[:120],
                code=e.code[:40],
                message=e.message,
                raw=plain,
                raw_pii_enc=token,
            )
            for e in row.errors
        ]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class FillPlan:
    """What a row would add to an existing member: attribute values and new identifiers."""

    member_id: int
    version: int
    fields: dict[str, Any]
    identifiers: list[IdentifierIn]

    def __bool__(self) -> bool:
        return bool(self.fields or self.identifiers)


def plan_fill(member: Member, data: MemberEnroll, owners: dict[str, int]) -> FillPlan:
    """The member's empty fields the row can fill (never overwrite, never blank) and its
    identifiers nobody holds yet; nothing for a closed member."""
    if member.status == "closed":
        return FillPlan(member.id, member.version, {}, [])
    fill: dict[str, Any] = {
        f: getattr(data, f)
        for f in _FILL_FIELDS
        if not _empty(getattr(data, f)) and _empty(getattr(member, f))
    }
    if data.gender and data.gender != "unknown" and member.gender in (None, "", "unknown"):
        fill["gender"] = data.gender
    if data.interests and not member.interests:
        fill["interests"] = data.interests
    if data.phone and not member.phone_enc:
        fill["phone"] = data.phone
    if data.email and not member.email_enc:
        fill["email"] = data.email
    custom = {k: v for k, v in (data.custom or {}).items() if _empty((member.custom or {}).get(k))}
    if custom:
        fill["custom"] = custom
    # Phone and e-mail are filled as fields; card numbers change only through the card verbs.
    idents = [
        i
        for i in data.identifiers
        if i.type not in identity.OWNED_ELSEWHERE and pii.blind_index(i.type, i.value) not in owners
    ]
    return FillPlan(member.id, member.version, fill, idents)


def fill_in(session: Session, actor: Principal, plan: FillPlan) -> bool:
    """Apply a fill plan through ``update_member`` and ``add_identifier``; True if anything changed."""
    changed = False
    if plan.fields:
        member = service.update_member(
            session, actor=actor, member_id=plan.member_id, data=MemberUpdate(**plan.fields)
        )
        changed = member.version != plan.version  # update_member bumps it only when something changed
    for ident in plan.identifiers:
        _ident, created = identity.add_identifier(
            session,
            actor=actor,
            member_id=plan.member_id,
            type_=ident.type,
            value=ident.value,
            source=ident.source,
        )
        changed = changed or created
    return changed


def _record_counts(session: Session, summary: ImportSummary) -> None:
    run = ImportRepository(session).get(summary.run_id)
    if run is None:
        raise NotFound(f"Import {summary.run_id} was not found.")
    apply_counts(run, summary)
