"""Permissions (API key scopes) and the roles that bundle them. The single list clients see."""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "members:read": "Read member records (PII masked)",
    "members:write": "Enroll, update and close members",
    "members:pii": "See phone numbers and e-mail addresses unmasked; export and erase",
    "orders:read": "Read stores, products and orders",
    "orders:write": "Record orders and refunds, manage stores and products",
    "imports:write": "Run imports",
    "custom_fields:write": "Define and retire custom fields",
    "keys:manage": "Create and revoke API keys",
    "users:manage": "Create console users",
    "webhooks:manage": "Manage webhook subscriptions",
    "audit:read": "Read the audit log",
    "jobs:read": "See background jobs and their progress",
    "members:token": "Exchange an authenticated end user for a member token",
    "brands:manage": "Create brands (platform only)",
    "points:read": "Read point types, earn rules, members' points and points liability",
    "points:write": "Configure point types and earn rules; grant, transfer and hold points at checkout",
    "points:adjust": "Correct members' points and freeze or unfreeze them",
    "paid:read": "Read paid plans and members' paid subscriptions",
    "paid:write": "Sell, renew, upgrade and cancel members' paid subscriptions",
    "paid:configure": "Define paid plan categories and levels",
    "tiers:read": "Read tier levels, members' tiers and the tier distribution",
    "tiers:write": "Configure tier levels; override members' tiers",
    "coupons:read": "Read coupon templates, members' coupons, checkout locks and coupon settlement",
    "coupons:write": "Configure coupon templates, import codes, issue and void coupons",
    "coupons:redeem": "Evaluate carts and lock, redeem, release and return coupons at checkout",
    "identity:read": "Resolve OneIDs, read the identity graph, its change feed and conflicts",
    "identity:write": "Link and unlink identifiers, resolve conflicts, configure and recompute OneID",
    "events:read": "Read event sources, the tracking plan, its violations and the event stream",
    "events:write": "Manage event sources (write keys), the tracking plan and the quarantine",
    "events:collect": "Send server-side events for the brand's sources (offline, POS, media data)",
    "benefits:read": "Read benefits, members' entitlements, bookings, cards and benefit settlement",
    "benefits:write": "Configure benefits and cards; grant, void and book benefits; sell and refund cards",
    "benefits:verify": "Verify benefits at the desk: scan codes, manual and identity checks, appointments",
    "analytics:read": "Read analyses and the warehouse's freshness",
}

READ_ONLY = frozenset(
    {
        "members:read",
        "orders:read",
        "audit:read",
        "jobs:read",
        "paid:read",
        "tiers:read",
        "points:read",
        "coupons:read",
        "identity:read",
        "events:read",
        "benefits:read",
        "analytics:read",
    }
)
OPERATOR = READ_ONLY | {
    "members:write",
    "orders:write",
    "imports:write",
    "members:pii",
    "paid:write",
    "points:write",
    "points:adjust",
    "coupons:write",
    "coupons:redeem",
    "identity:write",
    "events:write",
    "events:collect",
    "benefits:write",
    "benefits:verify",
}
BRAND_ADMIN = frozenset(PERMISSIONS) - {"brands:manage"}

ROLES: dict[str, frozenset[str]] = {
    "platform_admin": frozenset({"*"}),
    "brand_admin": BRAND_ADMIN,
    "operator": frozenset(OPERATOR),
    "analyst": READ_ONLY,
}

# Roles that may exist without a brand (they see every brand).
PLATFORM_ROLES = frozenset({"platform_admin", "analyst"})


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in PERMISSIONS and s != "*"]
    if unknown:
        from huiyuan.kit.errors import ValidationFailed, field_error

        raise ValidationFailed(
            "Unknown scope(s): " + ", ".join(unknown),
            errors=[field_error("scopes", f"unknown scope '{s}'", "unknown-scope") for s in unknown],
        )
    return sorted(set(scopes))
