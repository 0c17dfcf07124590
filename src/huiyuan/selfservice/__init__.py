"""Member-facing access: member tokens and /api/v1/me."""
