"""The ``huiyuan`` command. Each command is thin: parse options, call services, print with Rich."""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from huiyuan.cli.clv import app as clv_app
from huiyuan.cli.common import console, db_url
from huiyuan.cli.keys import app as keys_app
from huiyuan.cli.warehouse import app as warehouse_app

if TYPE_CHECKING:
    from huiyuan.settings import Settings

app = typer.Typer(help="huiyuan — member-operations CRM for retail", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(clv_app, name="clv")
app.add_typer(warehouse_app, name="warehouse")

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: HUIYUAN_DATABASE_URL)")]


@app.command()
def migrate(db: DbOption = None) -> None:
    """Create or upgrade the database schema (Alembic)."""
    from huiyuan.kit.migrate import upgrade

    url = db_url(db)
    upgrade(url)
    console.print(f"[green]schema up to date[/green] ({url})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    db: DbOption = None,
    worker: Annotated[bool, typer.Option(help="Run the background worker in this process")] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes (default: HUIYUAN_SERVE_WORKERS, 1); with more than one, the "
            "background worker runs in the supervising process",
        ),
    ] = None,
) -> None:
    """Run the API and console (and, by default, the background worker)."""
    run_server(host=host, port=port, db=db, worker=worker, workers=workers)


def run_server(
    *,
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
    worker: bool = True,
    workers: int | None = None,
) -> None:
    """Migrate and serve the app with uvicorn; shared by ``serve`` and ``demo``.

    One process serves the app built here. ``workers`` > 1: uvicorn starts that many processes, each
    building its own app (``huiyuan.app.served_app``, without the background worker), and this
    process supervises them and runs the background worker itself — so exactly one process runs jobs
    and schedules, whichever server process dies and is restarted.
    """
    import uvicorn

    from huiyuan.app import create_app
    from huiyuan.kit.migrate import upgrade
    from huiyuan.settings import get_settings, reset_settings_cache

    if db:
        os.environ["HUIYUAN_DATABASE_URL"] = db
    if workers is not None:
        # The server processes read their settings from the environment they inherit.
        os.environ["HUIYUAN_SERVE_WORKERS"] = str(workers)
    reset_settings_cache()
    settings = get_settings()
    upgrade(settings.database_url)
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    if settings.serve_workers > 1:
        _run_processes(settings, worker=worker, options=options)
        return
    application = create_app(settings, start_worker=worker)
    # The app's long-lived objects leave the collector's passes: /v1/batch p99 220 → 40 ms
    # (docs/events-performance.md).
    gc.collect()
    gc.freeze()
    uvicorn.run(application, **options)


def _run_processes(settings: Settings, *, worker: bool, options: dict[str, Any]) -> None:
    import uvicorn

    from huiyuan.jobs.runner import start_in_process_worker
    from huiyuan.kit.db import Database
    from huiyuan.kit.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    database = Database(settings.database_url) if worker else None
    handle = start_in_process_worker(database, settings) if database is not None else None
    try:
        uvicorn.run("huiyuan.app:served_app", factory=True, workers=settings.serve_workers, **options)
    finally:
        if handle is not None:
            handle.stop()
        if database is not None:
            database.dispose()


def _register_optional() -> None:
    # Commands that live in their own modules register themselves here.
    import importlib

    for module in ("huiyuan.cli.demo", "huiyuan.cli.imports", "huiyuan.cli.worker"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_optional()
