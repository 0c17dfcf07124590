"""Members (A2 enrollment, A3 identity and record, C6 consent and privacy)."""
