"""The points ledger: every change to a member's points, as append-only entries over lots.

Owns the verbs that move points (``earn``, ``spend``, ``reserve``/``confirm``/``release``,
``freeze``/``unfreeze``, ``adjust``, ``reverse_lot``, ``restore_entry``, ``transfer``) and the
system sweeps (``activate_due``, ``expire_due``, ``release_due_reservations``). Each verb:

* locks the account row first (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write
  transaction is ``BEGIN IMMEDIATE``, so writers are serialised anyway), accounts of a transfer
  in id order, so two writers never wait on each other in a circle;
* then looks up its idempotency key (``PointOperation``): the same key and request returns the
  first result and writes nothing; the same key with another request raises
  ``IdempotencyMismatch``. Looking up *after* the lock is what makes 50 concurrent calls with one
  key produce one effect: the losers read the winner's committed operation;
* expires the account's lots that are past due and releases its timed-out reservations before
  anything else, so what it reads as available is what may really be spent, whether or not the
  expiry job has run;
* writes entries whose bucket deltas are applied to the cached account row in the same
  transaction, and the lot moves (``PointEntryLot``) of every draw or give-back.

Spending draws the soonest-expiring active lot first, first-in-first-out (lot id) on equal expiry,
lots without expiry last. Nothing here commits; audit rows for operator actions and outbox events
are written by the callers in ``service`` where they are business events, except ``points.earned``
(tiers listen to it) which every earn emits.

Written by hand: no maintained library keeps lot-based point ledgers with these rules.

Modules: ``core`` (accounts, operations, entries, lots, settling an account), ``verbs``, ``refunds``
(``reverse_lot``, ``restore_entry``) and ``due`` (the per-lot sweeps and ``account_totals``); this
package exposes their public names, so callers write ``ledger.earn(…)``.
"""

from huiyuan.points.ledger.core import (
    InsufficientPoints,
    LedgerResult,
    PointsNotAllowed,
    ReservationClosed,
    _hash,
    balance_of,
    earn_digest,
    open_account,
    point_type_by_code,
)
from huiyuan.points.ledger.due import account_totals, activate_due, expire_due, release_due_reservations
from huiyuan.points.ledger.refunds import restore_entry, reverse_lot
from huiyuan.points.ledger.verbs import adjust, confirm, earn, freeze, release, reserve, spend, transfer

__all__ = [
    "InsufficientPoints",
    "LedgerResult",
    "PointsNotAllowed",
    "ReservationClosed",
    "_hash",
    "account_totals",
    "activate_due",
    "adjust",
    "balance_of",
    "confirm",
    "earn",
    "earn_digest",
    "expire_due",
    "freeze",
    "open_account",
    "point_type_by_code",
    "release",
    "release_due_reservations",
    "reserve",
    "restore_entry",
    "reverse_lot",
    "spend",
    "transfer",
]
