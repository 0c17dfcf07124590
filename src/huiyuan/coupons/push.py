"""Push issue: an operator sends a template's coupons to a list of members as a background job.

``start_push`` records a ``CouponIssueRun`` with its targets — member ids (from the request or an
uploaded CSV of member ids or member numbers) or a filter (status, tier code, enrolment dates) —
and enqueues ``coupons.push``. The job walks the targets in id order, 500 members a transaction;
each member's issue runs in a savepoint, so a member over a limit is skipped with its reason and
the rest still get theirs. Each chunk commits with its checkpoint, and each issue's key is
``push:<run>:<member>``, so a stopped run resumes without issuing twice. The run row is the result
report: requested, issued, skipped and the first 1,000 skip reasons.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from huiyuan.coupons.issuing import CouponNotIssuable, issue
from huiyuan.coupons.models import CouponIssueRun
from huiyuan.coupons.schemas import IssueRunOut
from huiyuan.coupons.templates import get_template
from huiyuan.jobs import service as jobs
from huiyuan.jobs.models import JobRun
from huiyuan.kit.errors import AppError, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.tiers.models import MemberTier, TierLevel

JOB_KIND = "coupons.push"
CHUNK = 500
REPORT_CAP = 1000
FILTER_KEYS = {"status", "tier", "enrolled_from", "enrolled_to"}


def _filter_query(spec: dict[str, Any]) -> Select[Any]:
    stmt = select(Member.id)
    if "status" in spec:
        stmt = stmt.where(Member.status == spec["status"])
    else:
        stmt = stmt.where(Member.status == "active")
    if "tier" in spec:
        stmt = (
            stmt.join(MemberTier, MemberTier.member_id == Member.id)
            .join(TierLevel, TierLevel.id == MemberTier.level_id)
            .where(TierLevel.code == spec["tier"])
        )
    if "enrolled_from" in spec:
        stmt = stmt.where(Member.enrolled_at >= datetime.fromisoformat(spec["enrolled_from"]))
    if "enrolled_to" in spec:
        stmt = stmt.where(Member.enrolled_at < datetime.fromisoformat(spec["enrolled_to"]))
    return stmt


def _check_filter(spec: dict[str, Any]) -> None:
    unknown = sorted(set(spec) - FILTER_KEYS)
    errors = [field_error(f"member_filter.{k}", "unknown filter", "unknown-filter") for k in unknown]
    for key in ("enrolled_from", "enrolled_to"):
        if key in spec:
            try:
                if datetime.fromisoformat(str(spec[key])).tzinfo is None:
                    raise ValueError
            except ValueError:
                errors.append(field_error(f"member_filter.{key}", "an ISO time with a time zone", "invalid"))
    if errors:
        raise ValidationFailed("Invalid member filter.", errors=errors)


def parse_targets_csv(session: Session, text: str) -> list[int]:
    """Member ids from a CSV: one id or member number per row, or a ``member_id`` / ``member_number``
    column; unknown ones are refused with their line numbers."""
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if r and r[0].strip()]
    if not rows:
        raise ValidationFailed("The file has no members.", errors=[field_error("file", "empty", "empty")])
    header = [h.strip().lower() for h in rows[0]]
    col = 0
    if header[0] in ("member_id", "member_number", "id") or any(
        h in header for h in ("member_id", "member_number")
    ):
        col = (
            header.index("member_id")
            if "member_id" in header
            else header.index("member_number")
            if "member_number" in header
            else 0
        )
        rows = rows[1:]
    values = [r[col].strip() for r in rows if len(r) > col]
    ids: list[int] = []
    numbers: list[tuple[int, str]] = []
    for line, value in enumerate(values, start=2 if header != values[:1] else 1):
        if value.isdigit() and len(value) < 12:
            ids.append(int(value))
        else:
            numbers.append((line, value))
    known: set[int] = set()
    for start in range(0, len(ids), 5000):
        known.update(session.scalars(select(Member.id).where(Member.id.in_(ids[start : start + 5000]))))
    by_number: dict[str, int] = {}
    for start in range(0, len(numbers), 5000):
        chunk = [n for _, n in numbers[start : start + 5000]]
        by_number.update(
            session.execute(
                select(Member.member_number, Member.id).where(Member.member_number.in_(chunk))
            ).all()
        )
    unknown = [str(i) for i in ids if i not in known] + [n for _, n in numbers if n not in by_number]
    if unknown:
        raise ValidationFailed(
            f"{len(unknown)} member(s) in the file are unknown.",
            errors=[field_error("file", f"unknown member '{u}'", "unknown-member") for u in unknown[:50]],
        )
    return list(dict.fromkeys(ids + [by_number[n] for _, n in numbers]))


def start_push(
    session: Session,
    *,
    actor: Principal,
    template_id: int,
    member_ids: list[int] | None,
    member_filter: dict[str, Any] | None,
    reference: str | None,
) -> CouponIssueRun:
    brand_id = actor.scope.require_brand()
    template = get_template(session, template_id)
    if template.status != "active":
        raise CouponNotIssuable(f"The template is {template.status}.", reason=f"template-{template.status}")
    if (member_ids is None) == (member_filter is None):
        raise ValidationFailed(
            "Give either member ids (or a file) or a member filter.",
            errors=[
                field_error("member_ids", "exactly one of member_ids, file and member_filter", "targets")
            ],
        )
    if member_filter is not None:
        _check_filter(member_filter)
        targets: dict[str, Any] = {"filter": member_filter}
        requested = len(session.scalars(_filter_query(member_filter)).all())
    else:
        assert member_ids is not None
        targets = {"member_ids": sorted(set(member_ids))}
        requested = len(targets["member_ids"])
    run = CouponIssueRun(
        brand_id=brand_id,
        template_id=template.id,
        targets=targets,
        reference=reference,
        requested=requested,
        status="queued",
        report=[],
        actor=actor.label[:120],
    )
    session.add(run)
    session.flush()
    run.job_id = jobs.enqueue(session, actor=actor, kind=JOB_KIND, params={"issue_run_id": run.id}).id
    return run


def _chunk(session: Session, run: CouponIssueRun, after: int) -> list[int]:
    if "member_ids" in run.targets:
        ids: list[int] = run.targets["member_ids"]
        return [i for i in ids if i > after][:CHUNK]
    stmt = _filter_query(run.targets["filter"]).where(Member.id > after).order_by(Member.id).limit(CHUNK)
    return list(session.scalars(stmt))


def run_push(
    open_session: Callable[[], Any],
    *,
    actor: Principal,
    run_id: int,
    state: dict[str, Any],
    checkpoint: Callable[[dict[str, Any], Session], None],
    progress: Callable[[int, int | None, str | None], None],
) -> dict[str, Any]:
    """Issue to every target after ``state['after']``; commits per chunk through ``open_session``."""
    after = int(state.get("after", 0))
    while True:
        with open_session() as session:
            run = session.get(CouponIssueRun, run_id)
            assert run is not None
            members = _chunk(session, run, after)
            if not members:
                run.status = "completed"
                return {"issue_run_id": run.id, "issued": run.issued, "skipped": run.skipped}
            run.status = "running"
            report = list(run.report)
            for member_id in members:
                try:
                    with session.begin_nested():
                        done = issue(
                            session,
                            actor=actor,
                            template_id=run.template_id,
                            member_id=member_id,
                            key=f"push:{run.id}:{member_id}",
                            channel="push",
                            reference=run.reference,
                        )
                    if not done.replayed:
                        run.issued += 1
                except AppError as exc:
                    run.skipped += 1
                    if len(report) < REPORT_CAP:
                        report.append({"member_id": member_id, "reason": exc.code, "detail": exc.detail})
            run.report = report
            after = members[-1]
            checkpoint({"after": after}, session)
            done_count, total, issued, skipped = (
                run.issued + run.skipped,
                run.requested,
                run.issued,
                run.skipped,
            )
        progress(done_count, total, f"issued {issued}, skipped {skipped} of {total}")


def get_run(session: Session, run_id: int) -> CouponIssueRun:
    run = session.get(CouponIssueRun, run_id)
    if run is None:
        raise NotFound(f"Issue run {run_id} was not found.")
    return run


def run_out(session: Session, run: CouponIssueRun) -> IssueRunOut:
    """The run as the API shows it; a run whose job failed or was cancelled says so, since the job
    cannot update the run row from the transaction that failed."""
    out = IssueRunOut.model_validate(run, from_attributes=True)
    if run.status in ("queued", "running") and run.job_id is not None:
        job_status = session.scalar(select(JobRun.status).where(JobRun.id == run.job_id))
        if job_status in ("failed", "cancelled"):
            out.status = job_status
    return out
