"""Access (C1): console users with roles, API keys for other systems, member tokens."""
