"""What a wallet did, read from the ledger: an account's statement and the settlement between stores.

**Statement**: every ledger entry of the account's sub-ledgers over its bindings (see
``WalletBinding``), newest first, each tied back to the top-up, payment or refund it belongs to.
Staff see the whole history of the account; a member sees only the periods it was bound to them.

**Settlement** of a period ``[start, end)``, per store (``None``: online or no store), in fen from
the ledger's entries (refund entries count at their refund's store):

* ``topped_up`` / ``bonus_granted``: principal and bonus lots granted by top-ups;
* ``topup_refunded`` / ``bonus_clawed``: principal and bonus taken back by top-up refunds, and
  ``cash_refunded`` the cash paid back for them (principal less bonus charged back);
* ``spent_principal`` / ``spent_bonus``: payments (one-step spends, and confirms of held payments,
  counted when confirmed); ``refunded_principal`` / ``refunded_bonus``: payment refunds;
* ``cash_in`` = topped_up − cash_refunded (cash the store collected for the pool), ``redeemed`` =
  spent_principal − refunded_principal (prepaid money it honoured), ``net`` = cash_in − redeemed:
  positive, the store owes the pool that much; negative, the pool owes the store. Bonus is
  brand-funded and reported apart (``bonus_redeemed``), as is bonus that expired (``bonus_expired``).

Over all stores, Σ net = the growth of outstanding principal in the period + the bonus charged back
at top-up refunds (that cash stays with the store that refunded).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.kit import tables
from huiyuan.kit.errors import NotFound, ValidationFailed, field_error
from huiyuan.kit.pagination import encode_cursor
from huiyuan.kit.tables import Section
from huiyuan.points.models import PointEntry
from huiyuan.wallet import accounts
from huiyuan.wallet.core import yuan
from huiyuan.wallet.models import WalletType
from huiyuan.wallet.repository import WalletRepository
from huiyuan.wallet.schemas import SettlementLineOut, SettlementOut, StatementLineOut, StatementOut

ACTIVITY = {
    "earn": "top_up",
    "spend": "payment",
    "reserve": "payment",
    "confirm": "payment",
    "release": "payment",
    "restore": "refund",
    "reverse": "refund",
    "transfer_out": "rebind",
    "transfer_in": "rebind",
    "expire": "expiry",
    "carry": "expiry",
}


# -- statements -----------------------------------------------------------------------------------


def statement(
    session: Session,
    account_id: int,
    *,
    member_id: int | None,
    before_id: int | None,
    limit: int,
    activity: str | None = None,
    sub_ledger: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> StatementOut:
    """The account's ledger lines, newest first; ``member_id`` limits them to that member's bindings,
    ``activity`` (top_up, payment, refund, rebind, expiry), ``sub_ledger`` (principal, bonus) and
    ``[start, end)`` filter them."""
    repo = WalletRepository(session)
    account = accounts.get_account(session, account_id)
    if member_id is not None and account.member_id != member_id:
        raise NotFound(f"Wallet account {account_id} was not found.")
    bindings = [b for b in repo.bindings(account.id) if member_id is None or b.member_id == member_id]
    wt = repo.type(account.wallet_type_id)
    assert wt is not None
    kinds = [k for k, a in ACTIVITY.items() if a == activity] if activity else None
    part = {"principal": wt.principal_point_type_id, "bonus": wt.bonus_point_type_id}.get(sub_ledger or "")
    rows = repo.statement_entries(
        bindings,
        before_id=before_id,
        limit=limit + 1,
        kinds=kinds,
        point_type_id=part,
        start=start,
        end=end,
    )
    shown = rows[:limit]
    return StatementOut(
        wallet_account_id=account.id,
        balance=accounts.balance_of(session, account),
        items=_lines(session, wt, shown),
        next_cursor=encode_cursor(shown[-1].id) if len(rows) > limit else None,
        limit=limit,
    )


def _ids(entries: list[PointEntry], source_type: str) -> set[int]:
    return {int(e.source_id) for e in entries if e.source_type == source_type and e.source_id}


def _lines(session: Session, wt: WalletType, entries: list[PointEntry]) -> list[StatementLineOut]:
    repo = WalletRepository(session)
    topups = repo.topups(_ids(entries, "wallet_topup"))
    refunds = repo.refunds(_ids(entries, "wallet_refund"))
    payments = repo.payments(
        _ids(entries, "wallet_payment") | {r.payment_id for r in refunds.values() if r.payment_id}
    )
    held = repo.payments_by_reservation({e.reservation_id for e in entries if e.reservation_id})
    store_ids = {e.store_id for e in entries if e.store_id} | {
        r.store_id for r in refunds.values() if r.store_id
    }
    stores = {i: s.code for i, s in repo.stores(store_ids).items()}
    out = []
    for e in entries:
        topup = topups.get(int(e.source_id)) if e.source_type == "wallet_topup" and e.source_id else None
        refund = refunds.get(int(e.source_id)) if e.source_type == "wallet_refund" and e.source_id else None
        payment = None
        if e.source_type == "wallet_payment" and e.source_id:
            payment = payments.get(int(e.source_id))
        elif e.reservation_id is not None:
            payment = held.get(e.reservation_id)
        elif refund is not None and refund.payment_id is not None:
            payment = payments.get(refund.payment_id)
        store_id = refund.store_id if refund is not None else e.store_id
        out.append(
            StatementLineOut(
                id=e.id,
                occurred_at=e.occurred_at,
                sub_ledger="principal" if e.point_type_id == wt.principal_point_type_id else "bonus",
                kind=e.kind,
                amount=yuan(e.amount),
                held=yuan(e.d_reserved),
                activity=ACTIVITY.get(e.kind, e.kind),
                topup_id=topup.id if topup is not None else (refund.topup_id if refund is not None else None),
                payment_id=payment.id if payment is not None else None,
                refund_id=refund.id if refund is not None else None,
                order_ref=payment.order_ref if payment is not None else None,
                store=stores.get(store_id) if store_id else None,
            )
        )
    return out


# -- settlement -----------------------------------------------------------------------------------

FIGURES = (
    "topped_up",
    "bonus_granted",
    "topup_refunded",
    "cash_refunded",
    "bonus_clawed",
    "spent_principal",
    "spent_bonus",
    "refunded_principal",
    "refunded_bonus",
)
# (ledger entry kind, sub-ledger) → (figure, sign applied to the entry's amount)
_BOOKING = {
    ("earn", "p"): ("topped_up", 1),
    ("earn", "b"): ("bonus_granted", 1),
    ("spend", "p"): ("spent_principal", -1),
    ("spend", "b"): ("spent_bonus", -1),
    ("restore", "p"): ("refunded_principal", 1),
    ("restore", "b"): ("refunded_bonus", 1),
    ("reverse", "p"): ("topup_refunded", -1),
    ("reverse", "b"): ("bonus_clawed", -1),
}
MAX_PERIOD_DAYS = 366


def _line(store: str | None, f: dict[str, int]) -> SettlementLineOut:
    cash_in = f["topped_up"] - f["cash_refunded"]
    redeemed = f["spent_principal"] - f["refunded_principal"]
    return SettlementLineOut(
        store=store,
        **{name: yuan(f[name]) for name in FIGURES},
        cash_in=yuan(cash_in),
        redeemed=yuan(redeemed),
        net=yuan(cash_in - redeemed),
        bonus_redeemed=yuan(f["spent_bonus"] - f["refunded_bonus"]),
    )


def settle(
    session: Session, *, start: datetime, end: datetime, wallet_types: list[str] | None = None
) -> SettlementOut:
    """Per store, money topped up and spent through the wallets in ``[start, end)`` and the net."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed(
            "Give the period with a timezone.", errors=[field_error("from", "timezone required", "naive")]
        )
    if end <= start or (end - start).days > MAX_PERIOD_DAYS:
        raise ValidationFailed(
            f"The period must end after it starts and span at most {MAX_PERIOD_DAYS} days.",
            errors=[field_error("to", f"after from, within {MAX_PERIOD_DAYS} days", "range")],
        )
    repo = WalletRepository(session)
    types = repo.types()
    if wallet_types:
        unknown = sorted(set(wallet_types) - {t.code for t in types})
        if unknown:
            raise ValidationFailed(
                f"Unknown wallet type(s): {', '.join(unknown)}.",
                errors=[
                    field_error("wallet_type", f"no wallet type '{c}'", "unknown-wallet-type")
                    for c in unknown
                ],
            )
        types = [t for t in types if t.code in wallet_types]
    parts = {t.principal_point_type_id: "p" for t in types} | {t.bonus_point_type_id: "b" for t in types}
    per_store: dict[int | None, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    bonus_expired = 0
    for pt_id, kind, store_id, amount, d_reserved in repo.settlement_entries(parts.keys(), start, end):
        part = parts[pt_id]
        if kind == "expire":
            bonus_expired -= amount
            continue
        if kind == "confirm":
            figure, moved = ("spent_principal" if part == "p" else "spent_bonus"), -d_reserved
        else:
            figure, sign = _BOOKING[(kind, part)]
            moved = sign * amount
        per_store[store_id][figure] += moved
    for refund in repo.topup_refunds_booked(parts.keys(), start, end):
        per_store[refund.store_id]["cash_refunded"] += refund.cash_refund
    codes = {i: s.code for i, s in repo.stores({i for i in per_store if i is not None}).items()}
    keyed = sorted(per_store.items(), key=lambda kv: (kv[0] is None, codes.get(kv[0] or 0, "")))
    totals = dict.fromkeys(FIGURES, 0)
    for _store, figures in keyed:
        for name in FIGURES:
            totals[name] += figures[name]
    return SettlementOut(
        start=start,
        end=end,
        wallet_types=[t.code for t in types],
        lines=[_line(codes.get(s) if s is not None else None, f) for s, f in keyed],
        total=_line(None, totals),
        bonus_expired=yuan(bonus_expired),
    )


COLUMNS = ("store", *FIGURES, "cash_in", "redeemed", "net", "bonus_redeemed")


def sections(s: SettlementOut) -> list[Section]:
    lines = [[line.store or "(online)", *(getattr(line, c) for c in COLUMNS[1:])] for line in s.lines]
    lines.append(["(total)", *(getattr(s.total, c) for c in COLUMNS[1:])])
    summary: list[list[Any]] = [
        ["from", s.start.isoformat()],
        ["to", s.end.isoformat()],
        ["wallet_types", ", ".join(s.wallet_types)],
        ["bonus_expired", s.bonus_expired],
    ]
    return [("Wallet settlement per store", COLUMNS, lines), ("Period", ("item", "value"), summary)]


def to_csv(s: SettlementOut) -> str:
    """The settlement as CSV (UTF-8 with a BOM, so spreadsheet programs read it right)."""
    return tables.to_csv(sections(s))


def to_xlsx(s: SettlementOut) -> bytes:
    """The settlement as a workbook: the per-store table and the period."""
    return tables.to_xlsx(sections(s))
