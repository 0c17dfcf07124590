"""Every query of member imports: import runs, their row errors, and the batched identifier look-ups
that de-duplicate a chunk of rows in two statements. Tenancy comes from the session's scope; brand
conditions here only help the indexes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.members.models import ImportRowError, ImportRun, Member, MemberIdentifier

T = TypeVar("T")
_IN_BATCH = 900  # below every driver's bound-parameter limit


def _batches(values: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(values), _IN_BATCH):
        yield values[start : start + _IN_BATCH]


class ImportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, run_id: int) -> ImportRun | None:
        return self.session.scalars(select(ImportRun).where(ImportRun.id == run_id)).one_or_none()

    def list_runs(self, *, after_id: int | None, limit: int) -> list[ImportRun]:
        stmt = select(ImportRun)
        if after_id is not None:
            stmt = stmt.where(ImportRun.id < after_id)
        return list(self.session.scalars(stmt.order_by(ImportRun.id.desc()).limit(limit)))

    def errors(self, run_id: int, *, after_id: int | None, limit: int) -> list[ImportRowError]:
        stmt = select(ImportRowError).where(ImportRowError.import_run_id == run_id)
        if after_id is not None:
            stmt = stmt.where(ImportRowError.id > after_id)
        return list(self.session.scalars(stmt.order_by(ImportRowError.id).limit(limit)))

    def delete_errors(self, run_id: int) -> None:
        """Forget a run's row errors before it runs again (a resumed job starts the file over)."""
        for err in self.session.scalars(select(ImportRowError).where(ImportRowError.import_run_id == run_id)):
            self.session.delete(err)

    def error_count(self, run_id: int) -> int:
        stmt = select(func.count()).select_from(ImportRowError).where(ImportRowError.import_run_id == run_id)
        return int(self.session.scalar(stmt) or 0)

    def owners_by_bidx(self, brand_id: int, keys: Iterable[tuple[str, str]]) -> dict[str, int]:
        """``blind index → member id`` for the ``(type, blind index)`` identifiers that exist; one
        statement per type and batch, each served by the (brand, type, blind index) unique index."""
        by_type: dict[str, set[str]] = {}
        for type_, bidx in keys:
            by_type.setdefault(type_, set()).add(bidx)
        out: dict[str, int] = {}
        for type_, bidxs in sorted(by_type.items()):
            for batch in _batches(sorted(bidxs)):
                stmt = select(MemberIdentifier.value_bidx, MemberIdentifier.member_id).where(
                    MemberIdentifier.brand_id == brand_id,
                    MemberIdentifier.type == type_,
                    MemberIdentifier.value_bidx.in_(batch),
                )
                out.update({bidx: member_id for bidx, member_id in self.session.execute(stmt)})
        return out

    def members_by_ids(self, ids: Iterable[int]) -> dict[int, Member]:
        """The members with these ids (in the caller's scope), by id."""
        out: dict[int, Member] = {}
        for batch in _batches(sorted(set(ids))):
            out.update({m.id: m for m in self.session.scalars(select(Member).where(Member.id.in_(batch)))})
        return out

    def members_by_number(self, brand_id: int, numbers: Iterable[str]) -> dict[str, int]:
        """``member number → member id`` for the numbers that exist."""
        out: dict[str, int] = {}
        for batch in _batches(sorted(set(numbers))):
            stmt = select(Member.member_number, Member.id).where(
                Member.brand_id == brand_id, Member.member_number.in_(batch)
            )
            out.update({number: member_id for number, member_id in self.session.execute(stmt)})
        return out
