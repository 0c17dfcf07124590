"""Where every domain's router is mounted. Adding a domain = one line in ``ROUTER_MODULES``."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

ROUTER_MODULES = (
    # First: Starlette tries routes in order, and the tracking API is by far the busiest path
    # (matching it last cost ~0.75 ms a request).
    "huiyuan.events.collect_api",
    # Then orders, the busiest write of the API (after ~70 other routes it cost ~0.4 ms an order);
    # no router before it serves these paths.
    "huiyuan.orders.api",
    "huiyuan.system.api",
    "huiyuan.auth.api",
    "huiyuan.tenancy.api",
    "huiyuan.members.api",
    "huiyuan.members.fields_api",
    "huiyuan.members.identity_api",
    "huiyuan.members.consent_api",
    "huiyuan.members.privacy_api",
    "huiyuan.members.import_api",
    "huiyuan.points.api",
    "huiyuan.points.me_api",
    "huiyuan.points.actions_api",
    "huiyuan.points.mall_api",
    "huiyuan.points.merchants_api",
    "huiyuan.points.programs_api",
    "huiyuan.tiers.api",
    "huiyuan.tiers.me_api",
    "huiyuan.paid.api",
    "huiyuan.coupons.api",
    "huiyuan.coupons.me_api",
    "huiyuan.benefits.api",
    "huiyuan.benefits.me_api",
    "huiyuan.wallet.api",
    "huiyuan.wallet.pay_api",
    "huiyuan.wallet.me_api",
    "huiyuan.events.api",
    "huiyuan.identity.api",
    "huiyuan.profile.api",
    "huiyuan.warehouse.api",
    "huiyuan.analytics.api",
    "huiyuan.analytics.api_journeys",
    "huiyuan.analytics.api_heatmap",
    "huiyuan.analytics.api_clv",
    "huiyuan.analytics.api_events",
    "huiyuan.outbox.api",
    "huiyuan.jobs.api",
    "huiyuan.selfservice.api",
    "huiyuan.console.routes",
)


def include_routers(app: FastAPI) -> None:
    """Every domain's routes onto the app's router as they are. Each ``APIRouter`` has already joined
    its prefix, tags, responses and dependencies into its routes, and the app adds nothing of its
    own, so ``app.include_router`` would give the same routes and the same OpenAPI document (tested).
    It is not used because since FastAPI 0.137 an included router stays a node of its own that every
    request walks route by route, twice, with more work per route: in process, ``/ping`` took
    434–458 µs a request that way and 325–330 µs flat, a console page 1.09–1.12 ms and 0.80–0.85, a
    404 1.80–1.94 ms and 1.26 (docs/performance.md). Routers that include others keep those as they
    are."""
    for name in ROUTER_MODULES:
        app.router.routes.extend(importlib.import_module(name).router.routes)
