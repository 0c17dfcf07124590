"""The ``huiyuan`` command. Each command is thin: parse options, call services, print with Rich."""

from __future__ import annotations

import gc
import os
from typing import Annotated

import typer

from huiyuan.cli.clv import app as clv_app
from huiyuan.cli.common import console, db_url
from huiyuan.cli.keys import app as keys_app
from huiyuan.cli.warehouse import app as warehouse_app

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
) -> None:
    """Run the API and console (and, by default, the background worker)."""
    run_server(host=host, port=port, db=db, worker=worker)


def run_server(
    *, host: str | None = None, port: int | None = None, db: str | None = None, worker: bool = True
) -> None:
    """Migrate and serve the app with uvicorn; shared by ``serve`` and ``demo``."""
    import uvicorn

    from huiyuan.app import create_app
    from huiyuan.kit.migrate import upgrade
    from huiyuan.settings import get_settings, reset_settings_cache

    if db:
        os.environ["HUIYUAN_DATABASE_URL"] = db
        reset_settings_cache()
    settings = get_settings()
    upgrade(settings.database_url)
    application = create_app(settings, start_worker=worker)
    # The app's long-lived objects leave the collector's passes: /v1/batch p99 220 → 40 ms (docs/events.md).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


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
