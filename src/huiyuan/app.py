"""The FastAPI application: API, member-facing API and console in one process."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from huiyuan import __version__
from huiyuan.kit.db import Database
from huiyuan.kit.logging import configure_logging
from huiyuan.kit.web import RequestContextMiddleware, install_error_handlers
from huiyuan.settings import Settings, get_settings

DESCRIPTION = """
huiyuan (会员) is a member-operations CRM for retail.

* **Auth**: `Authorization: Bearer <api key>` for systems; member tokens (`hym_…`) for `/api/v1/me`.
* **Errors**: RFC 9457 problem details (`application/problem+json`) with a stable `code` and field `errors`.
* **Pagination**: `?limit=&cursor=`; responses are `{"items": [...], "next_cursor": ...}`.
* **Tenancy**: brand keys see only their brand; platform keys choose one with `X-Huiyuan-Brand`.
"""


def create_app(
    settings: Settings | None = None, db: Database | None = None, *, start_worker: bool | None = None
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    database = db or Database(settings.database_url)
    run_worker = settings.run_worker_in_process if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if db is None:  # a process of its own: checkpoints off the writers' path (``kit.checkpoints``)
            database.start_checkpoints()
        if run_worker:
            from huiyuan.jobs.runner import start_in_process_worker

            worker = start_in_process_worker(database, settings)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="huiyuan",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.db = database
    app.state.settings = settings
    install_error_handlers(app)
    from huiyuan.events.collect_api import TrackingRoutes

    app.add_middleware(TrackingRoutes)  # inside the request context (added later = outer)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)

    from huiyuan.routes import include_routers

    include_routers(app)
    return app


def served_app() -> FastAPI:
    """The app of one process of ``huiyuan serve --workers N`` (uvicorn calls it in each process).
    Never runs the background worker: the supervising process does (``cli.main.run_server``)."""
    app = create_app(start_worker=False)
    # As in the single-process server: long-lived objects leave the collector's passes.
    gc.collect()
    gc.freeze()
    return app
