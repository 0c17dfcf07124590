"""Health and meta endpoints."""
