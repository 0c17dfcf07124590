"""Audit log: who changed what, when, with a before → after summary."""
