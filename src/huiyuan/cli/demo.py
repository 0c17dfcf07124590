"""``huiyuan demo``: migrate, build the demo world (``huiyuan.demo``), write the credentials file, print
the logins and keys, then serve the API and console. Thin: options, progress bars and output only."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.engine import make_url

from huiyuan.cli.common import RichReporter, console, db_url, progress_bars
from huiyuan.demo.world import DemoWorld, Reporter, build_world
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError

PHASES = {
    "members": "会员 members",
    "orders": "订单 orders",
    "refunds": "退款 refunds",
    "points": "积分 points",
    "tiers": "等级 tiers",
    "events": "事件 events",
}


class _DemoReporter(RichReporter, Reporter):
    """The shared progress bars, as the demo builder's reporter."""


def _reset_sqlite(url: str) -> None:
    path = make_url(url).database
    if not path or path == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def _print_logins(world: DemoWorld, url: str, out: Path, base_url: str) -> None:
    table = Table(title=f"huiyuan demo — console logins ({base_url})")
    for col in ("brand", "user", "password", "role"):
        table.add_column(col)
    table.add_row("platform", world.platform_user.username, world.platform_user.password, "platform_admin")
    for b in world.brands:
        for n, user in enumerate(b.users):
            table.add_row(f"{b.code} {b.name}" if n == 0 else "", user.username, user.password, user.role)
    console.print(table)
    # Keys on lines of their own so they can be copied whole whatever the terminal's width.
    console.print("API keys (Authorization: Bearer <key>):", style="bold")
    console.print(f"  platform  {world.platform_api_key}", soft_wrap=True)
    for b in world.brands:
        console.print(f"  {b.code:<9} {b.api_key}", soft_wrap=True)
    console.print("Tracking write keys (POST /v1/batch, HTTP Basic '<key>:'):", style="bold")
    for b in world.brands:
        console.print(f"  {b.code:<9} {b.write_key}", soft_wrap=True)
    counts = Table(title="demo world")
    for col in ("brand", "stores", "products", "members", "orders", "refunds"):
        counts.add_column(col, justify="right" if col != "brand" else "left")
    for b in world.brands:
        c = b.counts
        counts.add_row(
            b.code,
            str(len(b.stores)),
            f"{c.get('products', 0):,}",
            f"{c.get('members', 0):,}",
            f"{c.get('orders', 0):,}",
            f"{c.get('refunds', 0):,}",
        )
    console.print(counts)
    console.print(f"credentials written to [bold]{out}[/bold]; database {url}")


def demo(
    members: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Members across the three brands")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed builds the same world")] = 7,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: HUIYUAN_DATABASE_URL)")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API and console afterwards")
    ] = True,
    credentials_out: Annotated[
        Path, typer.Option("--credentials-out", help="Where to write logins and API keys (JSON)")
    ] = Path("demo-credentials.json"),
    reset: Annotated[
        bool, typer.Option("--reset/--no-reset", help="Delete an existing SQLite file first")
    ] = True,
    months: Annotated[int, typer.Option(min=1, max=60, help="Months of order history")] = 24,
    end: Annotated[
        str | None,
        typer.Option(help="When the history ends, ISO 8601 (default: now); for reproducible builds"),
    ] = None,
    loyalty: Annotated[
        bool,
        typer.Option(
            "--loyalty/--no-loyalty",
            help="Configure points, tiers and paid plans and live them over the history (slower)",
        ),
    ] = True,
    coupons: Annotated[
        bool,
        typer.Option(
            "--coupons/--no-coupons", help="Coupon templates and 60 days of coupons issued and used"
        ),
    ] = True,
    events: Annotated[
        int,
        typer.Option(
            min=0, max=50_000_000, help="Tracking events over the history, with each brand's tracking plan"
        ),
    ] = 0,
) -> None:
    """Build a realistic demo retail world (3 brands, stores, members, 2 years of orders) and serve it."""
    from huiyuan.kit.migrate import upgrade
    from huiyuan.settings import get_settings

    url = db_url(db)
    until = None
    if end:
        try:
            until = datetime.fromisoformat(end.replace("Z", "+00:00"))
        except ValueError:
            raise typer.BadParameter("not an ISO 8601 time, e.g. 2026-06-30T16:00:00Z", param_hint="--end")
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
    if url.startswith("sqlite") and reset:
        _reset_sqlite(url)
    started = time.perf_counter()
    with console.status("migrating the database…"):
        upgrade(url)
    database = Database(url)
    try:
        with progress_bars() as progress:
            world = build_world(
                database,
                members=members,
                seed=seed,
                months=months,
                end=until,
                reporter=_DemoReporter(progress, PHASES),
                loyalty=loyalty,
                coupons=coupons,
                events=events,
            )
    except AppError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1)
    finally:
        database.dispose()
    settings = get_settings()
    base_url = f"http://{settings.host}:{settings.port}"
    credentials = world.credentials(base_url)
    shown_url = make_url(url).render_as_string(hide_password=True)
    credentials["database_url"] = shown_url
    credentials_out.write_text(json.dumps(credentials, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    credentials_out.chmod(0o600)  # it holds passwords and API keys
    _print_logins(world, shown_url, credentials_out, base_url)
    console.print(f"built in {time.perf_counter() - started:,.1f} s")
    if serve:
        from huiyuan.cli.main import run_server

        console.print(f"serving on [bold]{base_url}[/bold] (API docs at {base_url}/docs); Ctrl-C stops")
        run_server(db=url)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the ``huiyuan`` CLI."""
    app.command("demo")(demo)
