"""Coupons: templates, codes, issue, redemption and settlement (A7)."""
