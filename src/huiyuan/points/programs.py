"""Shared point programmes (联盟积分): the platform's programmes, the brands in them, members linked
across brands, earning and spending at any brand of a programme, and clearing between brands.

Design: a programme is *hosted* by one brand and its points are an ordinary point type of the host,
so accounts, lots, entries, expiry, refunds and their invariants are the host brand's ledger
(``points.ledger``), untouched. A participant brand never reads or writes host rows itself: this
module is the one bridge (``host_scope``) that, for the length of one ledger call, narrows the
request's session to the host brand, after checking that the calling brand takes part in the
programme and that the member is its own, linked member. Clearing reads every brand's programme
operations through the same bridge's cross-brand view (``all_brands_view``), read-only. Everything
else runs in the caller's own scope, so the tenancy filter of ``kit.db`` keeps one brand from
seeing another's participations, links and operations.

* Linking: a participant's member is linked to the host member with the same phone blind index;
  when the host has none, a member is enrolled in the host brand with only that phone (channel
  ``import``, source ``program:<code>:<brand>``). The host's own members link to themselves.
* Earning: the calling brand funds the grant (lot ``funded_by = "brand:<id>"``), by ``points`` or
  by ``paid_amount`` at its participation's earn rate (rounded down).
* Spending and refunds: the calling brand is where the points were consumed; a refund gives back
  points of one of the brand's own spends.
* Idempotency: a client key is namespaced per programme and brand (ledger key
  ``program:<programme>:<brand>:<key>``), so the same key from two brands is two operations, and the
  same key with another request is ``idempotency-key-reused``.
* Clearing (``settle``): the host's clearing arithmetic (``points.clearing.clear``) over parties
  ``brand:<id>``: the funder of each consumed point owes the brand that redeemed it the point's
  fair value at grant; positions net out between brands (多边清算).

Modules: this one (the bridge, links, earn/spend/refund, what a brand sees), ``program_admin``
(the platform's programmes and participations), ``program_checkout`` (quote, reserve, confirm and
release of checkout holds), ``program_clearing`` (settlement between brands),
``program_models``, ``program_repository``, ``program_schemas`` and ``programs_api``. Like every
verb, nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import scope_of, set_scope
from huiyuan.kit.errors import (
    AppError,
    Conflict,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal, Scope
from huiyuan.members import service as members
from huiyuan.members.models import Member
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points import ledger
from huiyuan.points import reads as points
from huiyuan.points.ledger import LedgerResult
from huiyuan.points.program_models import (
    PointProgram,
    PointProgramBrand,
    PointProgramLink,
    PointProgramOperation,
)
from huiyuan.points.program_repository import ProgramRepository
from huiyuan.points.program_schemas import (
    LinkedHoldingsOut,
    ProgramEntryOut,
    ProgramOperationOut,
    ProgramPointsOut,
)
from huiyuan.points.schemas import BalanceOut
from huiyuan.tenancy.models import Brand

ENTRIES_SHOWN = 100
HOLDINGS_CHUNK = 1000


class ProgramInactive(AppError):
    status = 409
    code = "program-inactive"
    title = "The programme or the brand's participation does not allow this now"


class MemberNotLinked(AppError):
    status = 409
    code = "member-not-linked"
    title = "The member is not linked to the programme"


# -- the bridge -----------------------------------------------------------------------------------


@contextmanager
def _scoped(session: Session, scope: Scope) -> Iterator[None]:
    before = scope_of(session)
    # Pending rows belong to the caller's scope: write them under it before switching, and write
    # what the block added under the block's scope before switching back.
    session.flush()
    set_scope(session, scope)
    try:
        yield
        session.flush()
    finally:
        set_scope(session, before)


def host_scope(session: Session, program: PointProgram) -> AbstractContextManager[None]:
    """The session narrowed to the host brand, for one ledger call or host read of a checked caller."""
    return _scoped(session, Scope(brand_id=program.host_brand_id))


@contextmanager
def all_brands_view(session: Session) -> Iterator[None]:
    """The session seeing every brand, for the clearing reads of a checked caller; read-only."""
    with _scoped(session, Scope(brand_id=None, platform=True)):
        yield
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("programme clearing's cross-brand view must not write")


def _host_actor(actor: Principal, brand_code: str, program: PointProgram) -> Principal:
    """The caller acting in the host's ledger, named with its brand so entries show who acted."""
    return Principal(
        kind=actor.kind,
        id=actor.id,
        name=f"{brand_code}/{actor.name}"[:100],
        scope=Scope(brand_id=program.host_brand_id),
    )


def _ledger_key(program: PointProgram, brand_id: int, key: str) -> str:
    return f"program:{program.id}:{brand_id}:{key}"


# -- programmes -----------------------------------------------------------------------------------


def program_by_code(session: Session, code: str) -> PointProgram:
    program = ProgramRepository(session).program_by_code(code)
    if program is None:
        raise NotFound(f"Point programme '{code}' was not found.")
    return program


# -- the calling brand's standing -----------------------------------------------------------------


def participation_of(session: Session, actor: Principal, program: PointProgram) -> PointProgramBrand | None:
    brand_id = actor.scope.brand_id
    if brand_id is None:
        return None
    return ProgramRepository(session).participation(program.id, brand_id)


@dataclass
class Standing:
    program: PointProgram
    participation: PointProgramBrand
    brand: Brand


def standing(session: Session, actor: Principal, code: str, *, verb: str | None) -> Standing:
    """The programme as the calling brand takes part in it; ``verb`` (earn, spend, refund, link)
    checks that the programme and the participation allow it now."""
    brand_id = actor.scope.require_brand()
    program = ProgramRepository(session).program_by_code(code)
    participation = participation_of(session, actor, program) if program is not None else None
    if program is None or participation is None:
        # Not in it: answered like a missing programme, so brands learn nothing of others'.
        raise NotFound(f"Point programme '{code}' was not found.")
    if verb is not None:
        if participation.status != "active":
            raise ProgramInactive("The brand has left this programme.")
        if program.status == "closed" or (program.status == "paused" and verb in ("earn", "link")):
            raise ProgramInactive(f"The programme is {program.status}.")
    brand = session.get(Brand, brand_id)
    assert brand is not None
    return Standing(program=program, participation=participation, brand=brand)


def _own_member(session: Session, brand_id: int, member_id: int) -> Member:
    member = ProgramRepository(session).member(brand_id, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


# -- links ----------------------------------------------------------------------------------------


def link_member(
    session: Session, *, actor: Principal, code: str, member_id: int
) -> tuple[PointProgramLink, bool]:
    """Link the brand's member to the programme account; linking again returns the link (False)."""
    st = standing(session, actor, code, verb="link")
    repo = ProgramRepository(session)
    member = _own_member(session, st.brand.id, member_id)
    existing = repo.link_of_member(st.program.id, member.id)
    if existing is not None:
        return existing, False
    if member.status == "closed":
        raise ValidationFailed(
            "A closed member cannot be linked.",
            errors=[field_error("member_id", "member is closed", "closed")],
        )
    if st.participation.role == "host":
        host_member_id, matched_by = member.id, "self"
    else:
        if not member.phone_bidx or not member.phone_enc:
            raise ValidationFailed(
                "The member has no phone to find the programme account by.",
                errors=[field_error("member_id", "the member has no phone", "phone-required")],
            )
        host_member_id, matched_by = _host_member_for(session, st, member)
    if repo.link_of_host_member(st.program.id, st.brand.id, host_member_id) is not None:
        raise Conflict(
            "Another member of this brand is linked to that programme account.",
            errors=[field_error("member_id", "programme account already linked", "taken")],
        )
    link = PointProgramLink(
        brand_id=st.brand.id,
        program_id=st.program.id,
        member_id=member.id,
        host_member_id=host_member_id,
        matched_by=matched_by,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(link)
    except IntegrityError:
        # The same member linked concurrently: the other request's link is the answer.
        raced = repo.link_of_member(st.program.id, member.id)
        if raced is None:
            raise Conflict("The member was linked concurrently; retry.")
        return raced, False
    audit.record(
        session,
        actor=actor,
        action="point_program.member_linked",
        entity_type="member",
        entity_id=member.id,
        brand_id=st.brand.id,
        after={"program": st.program.code, "link_id": link.id, "matched_by": matched_by},
    )
    return link, True


def _host_member_for(session: Session, st: Standing, member: Member) -> tuple[int, str]:
    """The host member with the member's phone, enrolled with that phone only when there is none."""
    assert member.phone_bidx is not None and member.phone_enc is not None
    phone = pii.decrypt(member.phone_enc)
    with host_scope(session, st.program):
        found = ProgramRepository(session).members_by_phone(st.program.host_brand_id, member.phone_bidx)
        if found:
            return found[0].id, "phone"
        host_actor = Principal(
            kind="system",
            id=None,
            name=f"program:{st.program.code}/{st.brand.code}"[:100],
            scope=Scope(brand_id=st.program.host_brand_id),
        )
        try:
            with session.begin_nested():
                created = members.enroll_member(
                    session,
                    actor=host_actor,
                    data=MemberEnroll(
                        enroll_channel="import",
                        enroll_source=f"program:{st.program.code}:{st.brand.code}"[:120],
                        phone=phone,
                    ),
                )
        except Conflict as exc:
            # The phone is a host member's identifier (or was taken concurrently): link to that one.
            owner = exc.extra.get("existing_member_id")
            if owner is None:
                raced = ProgramRepository(session).members_by_phone(
                    st.program.host_brand_id, member.phone_bidx
                )
                if not raced:
                    raise
                owner = raced[0].id
            return int(owner), "phone"
        return created.id, "created"


def _link(session: Session, st: Standing, member_id: int) -> tuple[Member, PointProgramLink]:
    member = _own_member(session, st.brand.id, member_id)
    link = ProgramRepository(session).link_of_member(st.program.id, member.id)
    if link is None:
        raise MemberNotLinked(f"Member {member_id} is not linked to '{st.program.code}'; link it first.")
    return member, link


def get_link(session: Session, *, actor: Principal, code: str, member_id: int) -> PointProgramLink:
    """The brand's member's link to the programme, or 404."""
    st = standing(session, actor, code, verb=None)
    _own_member(session, st.brand.id, member_id)
    link = ProgramRepository(session).link_of_member(st.program.id, member_id)
    if link is None:
        raise NotFound(f"Member {member_id} is not linked to '{code}'.")
    return link


# -- earn, spend, refund --------------------------------------------------------------------------


@dataclass
class ProgramResult:
    operation: PointProgramOperation
    ledger: LedgerResult
    program_code: str

    @property
    def replayed(self) -> bool:
        return self.ledger.replayed


def _digest(kind: str, **fields: Any) -> str:
    return ledger._hash({"op": f"program:{kind}", **fields})


def _reused() -> IdempotencyMismatch:
    return IdempotencyMismatch(
        "This idempotency key was already used for a different programme operation.",
        errors=[field_error("idempotency_key", "already used with another request", "reused")],
    )


def _check_replay(
    session: Session, st: Standing, key: str, kind: str, digest: str
) -> PointProgramOperation | None:
    """The brand's earlier operation under ``key`` if it was this request; another request is refused."""
    done = ProgramRepository(session).operation_by_key(st.program.id, st.brand.id, key)
    if done is not None and (done.kind != kind or done.request_hash != digest):
        raise _reused()
    return done


def _record(
    session: Session,
    st: Standing,
    *,
    actor: Principal,
    result: LedgerResult,
    key: str,
    kind: str,
    digest: str,
    link: PointProgramLink,
    **fields: Any,
) -> ProgramResult:
    repo = ProgramRepository(session)
    if result.replayed:
        done = repo.operation_by_key(st.program.id, st.brand.id, key)
        if done is not None:
            if done.request_hash != digest:
                raise _reused()
            return ProgramResult(operation=done, ledger=result, program_code=st.program.code)
    op = PointProgramOperation(
        brand_id=st.brand.id,
        program_id=st.program.id,
        key=key,
        kind=kind,
        request_hash=digest,
        link_id=link.id,
        member_id=link.member_id,
        host_member_id=link.host_member_id,
        ledger_operation_id=result.operation_id,
        points=result.amount,
        actor=actor.label[:120],
        created_at=utcnow(),
        **fields,
    )
    session.add(op)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"point_program.{kind}",
        entity_type="member",
        entity_id=link.member_id,
        brand_id=st.brand.id,
        after={"program": st.program.code, "points": result.amount, "operation_id": op.id},
        note=fields.get("reason"),
    )
    return ProgramResult(operation=op, ledger=result, program_code=st.program.code)


def _store_id(session: Session, brand_id: int, code: str | None) -> int | None:
    if code is None:
        return None
    store = ProgramRepository(session).store_by_code(brand_id, code)
    if store is None:
        raise ValidationFailed(
            "Unknown store.", errors=[field_error("store", "no such store", "unknown-store")]
        )
    return store.id


def points_for(paid_amount: Decimal, earn_rate: Decimal) -> int:
    """Points a paid amount earns at a rate (points per yuan), rounded down."""
    return int((Decimal(paid_amount) * Decimal(earn_rate)).to_integral_value(rounding=ROUND_FLOOR))


def earn(
    session: Session,
    *,
    actor: Principal,
    code: str,
    member_id: int,
    key: str,
    amount: int | None = None,
    paid_amount: Decimal | None = None,
    order_ref: str | None = None,
    store: str | None = None,
    reason: str | None = None,
) -> ProgramResult:
    """Grant programme points to a linked member, funded by the calling brand."""
    st = standing(session, actor, code, verb="earn")
    _member, link = _link(session, st, member_id)
    if (amount is None) == (paid_amount is None):
        raise ValidationFailed(
            "Send either points or paid_amount.",
            errors=[field_error("points", "exactly one of points, paid_amount")],
        )
    store_id = _store_id(session, st.brand.id, store)
    # The request, not the points derived from it: a retry after the earn rate changed still replays.
    digest = _digest(
        "earn",
        member=member_id,
        points=amount,
        paid=paid_amount,
        order=order_ref,
        store=store_id,
        reason=reason,
    )
    done = _check_replay(session, st, key, "earn", digest)
    if done is not None:
        amount = done.points
    elif amount is None:
        assert paid_amount is not None
        amount = points_for(paid_amount, st.participation.earn_rate)
        if amount <= 0:
            raise ValidationFailed(
                "The paid amount earns no points at this brand's rate.",
                errors=[field_error("paid_amount", "earns 0 points at the brand's earn rate", "no-points")],
            )
    with host_scope(session, st.program):
        pt = ProgramRepository(session).point_type_by_id(st.program.point_type_id)
        assert pt is not None
        result = ledger.earn(
            session,
            actor=_host_actor(actor, st.brand.code, st.program),
            member_id=link.host_member_id,
            point_type=pt.code,
            amount=amount,
            key=_ledger_key(st.program, st.brand.id, key),
            source_type="program",
            source_id=order_ref,
            reason=reason,
            store_id=store_id,
            funded_by=f"brand:{st.brand.id}",
        )
    return _record(
        session,
        st,
        actor=actor,
        result=result,
        key=key,
        kind="earn",
        digest=digest,
        link=link,
        paid_amount=paid_amount,
        order_ref=order_ref,
        store_id=store_id,
        reason=reason,
    )


def spend(
    session: Session,
    *,
    actor: Principal,
    code: str,
    member_id: int,
    key: str,
    amount: int,
    order_ref: str | None = None,
    store: str | None = None,
    reason: str | None = None,
) -> ProgramResult:
    """Spend a linked member's programme points at the calling brand (which is owed their value)."""
    st = standing(session, actor, code, verb="spend")
    _member, link = _link(session, st, member_id)
    store_id = _store_id(session, st.brand.id, store)
    digest = _digest("spend", member=member_id, points=amount, order=order_ref, store=store_id, reason=reason)
    _check_replay(session, st, key, "spend", digest)
    with host_scope(session, st.program):
        pt = ProgramRepository(session).point_type_by_id(st.program.point_type_id)
        assert pt is not None
        result = ledger.spend(
            session,
            actor=_host_actor(actor, st.brand.code, st.program),
            member_id=link.host_member_id,
            point_type=pt.code,
            amount=amount,
            key=_ledger_key(st.program, st.brand.id, key),
            source_type="program",
            source_id=order_ref,
            reason=reason,
            store_id=store_id,
        )
    return _record(
        session,
        st,
        actor=actor,
        result=result,
        key=key,
        kind="spend",
        digest=digest,
        link=link,
        order_ref=order_ref,
        store_id=store_id,
        reason=reason,
    )


def refund(
    session: Session,
    *,
    actor: Principal,
    code: str,
    member_id: int,
    key: str,
    spend_key: str,
    amount: int,
    reason: str | None = None,
) -> ProgramResult:
    """Give back points of one of the brand's own spends (or confirmed reservations), to the lots
    they came from."""
    st = standing(session, actor, code, verb="refund")
    _member, link = _link(session, st, member_id)
    repo = ProgramRepository(session)
    spent = repo.operation_by_key(st.program.id, st.brand.id, spend_key)
    if spent is not None and spent.kind == "reserve":
        # A checkout hold is refunded through its confirm (``program_checkout``), the spend it became.
        spent = repo.operation_by_key(st.program.id, st.brand.id, f"{spend_key}#confirm")
    if spent is None or spent.kind not in ("spend", "confirm") or spent.member_id != member_id:
        raise NotFound(f"No spend '{spend_key}' of member {member_id} in this programme.")
    digest = _digest("refund", member=member_id, spend=spent.id, points=amount, reason=reason)
    _check_replay(session, st, key, "refund", digest)
    with host_scope(session, st.program):
        entry_id = ProgramRepository(session).spend_entry_of(spent.ledger_operation_id)
        assert entry_id is not None
        result = ledger.restore_entry(
            session,
            actor=_host_actor(actor, st.brand.code, st.program),
            entry_id=entry_id,
            amount=amount,
            key=_ledger_key(st.program, st.brand.id, key),
            reason=reason or "programme refund",
            source_type="program",
            source_id=spent.order_ref,
        )
    return _record(
        session,
        st,
        actor=actor,
        result=result,
        key=key,
        kind="refund",
        digest=digest,
        link=link,
        refunds_id=spent.id,
        order_ref=spent.order_ref,
        reason=reason,
    )


def order_earn_key(order_id: int) -> str:
    """The key of an order's automatic earn; "#" is outside the characters client keys may use."""
    return f"order#{order_id}#earned"


def take_back_for_refund(session: Session, *, actor: Principal, order_id: int, refund_id: int) -> int:
    """Reverse the refunded share of what a paid order of the calling brand earned automatically, in
    every programme (lots of the host ledger, ``ledger.reverse_lot``); returns the operations written.

    Allowed whatever the programme's or the participation's status: taking back is always due."""
    brand_id = actor.scope.require_brand()
    repo = ProgramRepository(session)
    order = repo.order(brand_id, order_id)
    if order is None or order.paid_amount <= 0:
        return 0
    share = min(Decimal(1), Decimal(order.refunded_amount) / Decimal(order.paid_amount))
    brand = session.get(Brand, brand_id)
    assert brand is not None
    written = 0
    for earned in repo.operations_with_key(brand_id, order_earn_key(order_id), "earn"):
        program = repo.program(earned.program_id)
        participation = repo.participation(earned.program_id, brand_id)
        link = session.get(PointProgramLink, earned.link_id)
        assert program is not None and participation is not None and link is not None
        st = Standing(program=program, participation=participation, brand=brand)
        key = f"refund#{refund_id}"
        with host_scope(session, program):
            lot = repo.lot_of_earn(earned.ledger_operation_id)
            assert lot is not None
            delta = (lot.amount if share >= 1 else int(lot.amount * share)) - lot.reversed_amount
            result = None
            if delta > 0:
                result = ledger.reverse_lot(
                    session,
                    actor=_host_actor(actor, brand.code, program),
                    lot_id=lot.id,
                    amount=delta,
                    key=_ledger_key(program, brand_id, key),
                    reason=f"order {order.order_number} refunded",
                    source_type="refund",
                    source_id=str(refund_id),
                )
        if result is None:
            continue
        digest = _digest("reverse", earned=earned.id, refund=refund_id, points=delta)
        _record(
            session,
            st,
            actor=actor,
            result=result,
            key=key,
            kind="reverse",
            digest=digest,
            link=link,
            refunds_id=earned.id,
            order_ref=earned.order_ref,
            reason=f"order {order.order_number} refunded",
        )
        written += 1
    return written


def operation_out(result: ProgramResult) -> ProgramOperationOut:
    op = result.operation
    return ProgramOperationOut(
        id=op.id,
        program=result.program_code,
        kind=op.kind,
        key=op.key,
        member_id=op.member_id,
        points=op.points,
        paid_amount=op.paid_amount,
        order_ref=op.order_ref,
        entries=result.ledger.entries,
        balance=BalanceOut(**result.ledger.balance),
        created_at=op.created_at,
    )


# -- what a brand sees ----------------------------------------------------------------------------


def member_points(session: Session, *, actor: Principal, code: str, member_id: int) -> ProgramPointsOut:
    """The linked member's programme balance (the whole account) and the brand's own lines of it.

    Lines other brands wrote are left out: a brand learns what a member holds, not where else the
    member earned or spent."""
    st = standing(session, actor, code, verb=None)
    _member, link = _link(session, st, member_id)
    repo = ProgramRepository(session)
    own = {
        op.ledger_operation_id: op
        for op in repo.operations_of_member(st.program.id, member_id, limit=ENTRIES_SHOWN)
    }
    with host_scope(session, st.program):
        pt = repo.point_type_by_id(st.program.point_type_id)
        assert pt is not None
        summary = points.member_summary(session, link.host_member_id)
        entries = repo.entries_of_operations(list(own))
    balance = next((b for b in summary.balances if b.point_type == pt.code), None)
    if balance is None:  # a retired type the member never held
        raise NotFound(f"Member {member_id} holds no points of '{st.program.code}'.")
    lines = [
        ProgramEntryOut(
            id=e.id,
            kind=e.kind,
            amount=e.amount,
            d_available=e.d_available,
            d_pending=e.d_pending,
            d_reserved=e.d_reserved,
            key=own[e.operation_id].key,
            order_ref=own[e.operation_id].order_ref,
            reason=e.reason,
            occurred_at=e.occurred_at,
        )
        for e in entries
        if e.member_id == link.host_member_id
    ]
    return ProgramPointsOut(
        program=st.program.code, member_id=member_id, as_of=summary.as_of, balance=balance, entries=lines
    )


def linked_holdings(session: Session, *, actor: Principal, code: str) -> LinkedHoldingsOut:
    """How many of the brand's members are linked to the programme, and the points they hold.

    Counts only: like ``member_points``, a brand learns what its own linked members hold."""
    st = standing(session, actor, code, verb=None)
    repo = ProgramRepository(session)
    host_members = repo.linked_host_members(st.program.id, st.brand.id)
    holders = held = 0
    with host_scope(session, st.program):
        for i in range(0, len(host_members), HOLDINGS_CHUNK):
            n, points_held = repo.holdings(st.program.point_type_id, host_members[i : i + HOLDINGS_CHUNK])
            holders, held = holders + n, held + points_held
    return LinkedHoldingsOut(
        program=st.program.code, linked_members=len(host_members), holders=holders, available_points=held
    )
