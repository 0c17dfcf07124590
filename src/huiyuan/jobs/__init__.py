"""Background jobs: a Huey worker (SQLite storage by default, Redis in production)."""
