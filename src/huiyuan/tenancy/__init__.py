"""Tenancy (C1): the platform, its brands and their stores."""
