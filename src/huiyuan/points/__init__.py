"""Points (A4): point types, lots, the append-only ledger, earn rules, expiry, clearing."""
