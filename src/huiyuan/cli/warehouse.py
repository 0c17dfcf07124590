"""``huiyuan warehouse sync|rebuild|status``: fill the DuckDB warehouse and show how fresh it is."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from huiyuan.cli.common import RichReporter, console, database, progress_bars
from huiyuan.settings import get_settings
from huiyuan.warehouse import freshness
from huiyuan.warehouse import sync as warehouse_sync
from huiyuan.warehouse.store import SyncInProgress, WarehouseBusy

app = typer.Typer(help="The analytics warehouse (DuckDB)", no_args_is_help=True)
DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: HUIYUAN_DATABASE_URL)")]
PathOption = Annotated[
    str | None, typer.Option("--path", help="Warehouse file (default: HUIYUAN_WAREHOUSE_PATH)")
]
WaitOption = Annotated[
    float, typer.Option("--wait", min=0, help="Seconds to wait for a sync that is running already")
]


def _run(db: str | None, path: str | None, tables: list[str] | None, full: bool, wait: float) -> None:
    target = path or get_settings().warehouse_path
    try:
        with progress_bars() as progress:
            report = warehouse_sync.sync(
                database(db), target, tables=tables, reporter=RichReporter(progress), full=full, wait=wait
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (SyncInProgress, WarehouseBusy) as exc:
        console.print(f"[yellow]{exc.detail}[/yellow]")
        raise typer.Exit(1) from None
    rate = report.rows / report.seconds if report.seconds else 0.0
    done = "rebuilt" if report.rebuilt else "synced"
    console.print(
        f"[green]{done}[/green] {target}: {report.rows:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s)"
    )


@app.command("sync")
def sync_command(
    db: DbOption = None,
    path: PathOption = None,
    tables: Annotated[
        list[str] | None,
        typer.Option("--tables", "--table", help="Only these tables (repeat, or separate by commas)"),
    ] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Copy what changed since the last sync (a cursor per table; resumable)."""
    names = [n.strip() for t in tables or [] for n in t.split(",") if n.strip()]
    _run(db, path, names or None, full=False, wait=wait)


@app.command("rebuild")
def rebuild(db: DbOption = None, path: PathOption = None, wait: WaitOption = 0.0) -> None:
    """Build the whole warehouse into a new file and swap it in."""
    _run(db, path, None, full=True, wait=wait)


@app.command("status")
def status(path: PathOption = None) -> None:
    """Rows, cursor and last sync of each table."""
    target = path or get_settings().warehouse_path
    try:
        rows = freshness(target)
    except WarehouseBusy as exc:
        console.print(f"[yellow]{exc.detail}[/yellow]")
        raise typer.Exit(1) from None
    if not rows:
        console.print(f"[yellow]no warehouse at {target} yet: run `huiyuan warehouse sync`[/yellow]")
        raise typer.Exit(1)
    table = Table(title=f"warehouse {target}")
    table.add_column("table", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("cursor")
    table.add_column("synced at (UTC)")
    for r in rows:
        synced = r["synced_at"].strftime("%Y-%m-%d %H:%M:%S") if r["synced_at"] else "never"
        table.add_row(r["table"], f"{r['rows']:,}", str(r["cursor"] or ""), synced)
    console.print(table)
