"""The app's routes are the domains' routes put on the app's router as they are (``huiyuan.routes``):
the same OpenAPI document and the same answers as ``app.include_router`` would give."""

from __future__ import annotations

import importlib

from fastapi import FastAPI
from fastapi.testclient import TestClient

from huiyuan.app import create_app
from huiyuan.kit.db import Database
from huiyuan.routes import ROUTER_MODULES


def _included(app: FastAPI) -> FastAPI:
    """A bare app with every domain's router included the documented way."""
    bare = FastAPI(title=app.title, version=app.version, description=app.description, redoc_url=None)
    for name in ROUTER_MODULES:
        bare.include_router(importlib.import_module(name).router)
    return bare


def test_the_flat_routes_give_the_included_routers_openapi() -> None:
    app = create_app(db=Database("sqlite://"), start_worker=False)
    assert app.openapi() == _included(app).openapi()
    # Every domain's routes are there, in their order, nested routers included.
    assert len(app.router.routes) >= sum(
        len(importlib.import_module(name).router.routes) for name in ROUTER_MODULES
    )


def test_a_route_late_in_the_list_and_an_unknown_path_answer_as_before() -> None:
    app = create_app(db=Database("sqlite://"), start_worker=False)
    with TestClient(app) as client:
        assert client.get("/ping").status_code == 200
        assert client.get("/console/login").status_code == 200  # the last router, a nested one
        r = client.get("/api/v1/oneid/settings")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert client.get("/no/such/path").status_code == 404
