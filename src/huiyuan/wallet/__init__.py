"""Stored value (储值卡 / 钱包), product map A10, kept on the points ledger.

A wallet type owns two point types of kind ``"wallet"`` (one unit = one fen): a *principal*
sub-ledger for money members paid in and a *bonus* sub-ledger for what top-up rules add. Every
movement of money is a ``huiyuan.points.ledger`` verb on them (``earn`` for top-ups, ``spend`` or
``reserve``/``confirm``/``release`` for payments, ``restore_entry`` and ``reverse_lot`` for refunds,
``transfer`` for re-binds), so the ledger's lots, holds, idempotency and invariants hold for wallet
money too. This package keeps what the ledger has no place for and must not move money itself.

Modules: ``models``, ``schemas``, ``repository`` (every query), ``rules`` (which top-up rule gives
what; pure), ``core`` (errors, locks and lock order, idempotent operations), ``configuration``
(wallet types, top-up rules), ``accounts`` (open, lock, unlock, close, re-bind, PIN), ``payments``
(top-ups and payments), ``refunds``, ``statements`` (statements and settlement), ``api``
(operators), ``pay_api`` (other systems), ``me_api`` (members). See ``docs/wallet.md``.
"""
