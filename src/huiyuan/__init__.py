"""huiyuan — member-operations CRM for retail (会员运营)."""

__version__ = "0.1.0"
