"""``huiyuan warehouse sync|rebuild|status``: fill the DuckDB warehouse and show how fresh it is."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from huiyuan.cli.common import RichReporter, console, database, progress_bars
from huiyuan.settings import get_settings
from huiyuan.warehouse import sync as warehouse_sync

app = typer.Typer(help="The analytics warehouse (DuckDB)", no_args_is_help=True)
DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: HUIYUAN_DATABASE_URL)")]
PathOption = Annotated[
    str | None, typer.Option("--path", help="Warehouse file (default: HUIYUAN_WAREHOUSE_PATH)")
]


def _run(db: str | None, path: str | None, tables: list[str] | None, full: bool) -> None:
    target = path or get_settings().warehouse_path
    try:
        with progress_bars() as progress:
            report = warehouse_sync.sync(
                database(db), target, tables=tables, reporter=RichReporter(progress), full=full
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    rate = report.rows / report.seconds if report.seconds else 0
    console.print(f"[green]{report.rows:,} rows[/green] copied to {target} in {report.seconds:.1f} s")
    console.print(f"{rate:,.0f} rows/s")


@app.command("sync")
def sync_command(
    db: DbOption = None,
    path: PathOption = None,
    table: Annotated[list[str] | None, typer.Option("--table", help="Only this table (repeatable)")] = None,
) -> None:
    """Copy what changed since the last sync (cursor per table; resumable)."""
    _run(db, path, table, full=False)


@app.command("rebuild")
def rebuild(db: DbOption = None, path: PathOption = None) -> None:
    """Build the whole warehouse into a new file and swap it in."""
    _run(db, path, None, full=True)


@app.command("status")
def status(path: PathOption = None) -> None:
    """Rows, cursor and last sync of each table."""
    target = path or get_settings().warehouse_path
    rows = warehouse_sync.freshness(target)
    if not rows:
        console.print(f"[yellow]no warehouse at {target} yet: run `huiyuan warehouse sync`[/yellow]")
        raise typer.Exit(1)
    table = Table(title=f"warehouse {target}")
    for col in ("table", "rows", "cursor", "synced at"):
        table.add_column(col)
    for r in rows:
        synced = r["synced_at"].strftime("%Y-%m-%d %H:%M:%S UTC") if r["synced_at"] else "never"
        table.add_row(r["table"], f"{r['rows']:,}", str(r["cursor"] or ""), synced)
    console.print(table)
