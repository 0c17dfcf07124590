"""``huiyuan import members FILE`` and ``huiyuan export members``: the member import and export from
the command line, synchronous, with a Rich progress bar. Thin: options in, one service call, output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from huiyuan.cli.common import console, database
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError
from huiyuan.kit.scope import Principal, Scope
from huiyuan.members import export, importer
from huiyuan.members.import_reader import detect_format
from huiyuan.members.repository import MemberFilter
from huiyuan.tenancy.repository import TenancyRepository

import_app = typer.Typer(help="Import data from files", no_args_is_help=True)
export_app = typer.Typer(help="Export data to files", no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: HUIYUAN_DATABASE_URL)")]
BrandOption = Annotated[
    str | None, typer.Option("--brand", help="Brand code (may be omitted when there is one brand)")
]


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed and task.elapsed:  # fewer than two progress reports: the overall rate
            speed = task.completed / task.elapsed
        return Text(f"{speed:,.0f} rows/s" if speed else "– rows/s", style="progress.data.speed")


def _actor(db: Database, brand: str | None, permissions: set[str]) -> Principal:
    with db.unit_of_work(write=False) as session:
        repo = TenancyRepository(session)
        if brand:
            row = repo.brand_by_code(brand)
            if row is None:
                raise typer.BadParameter(f"no brand '{brand}'", param_hint="--brand")
        else:
            brands = repo.brands()
            if len(brands) != 1:
                raise typer.BadParameter("choose a brand with --brand CODE", param_hint="--brand")
            row = brands[0]
        return Principal(
            kind="system",
            id=None,
            name="cli",
            scope=Scope(brand_id=row.id),
            permissions=frozenset(permissions),
        )


@import_app.command("members")
def import_members(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or XLSX file")
    ],
    brand: BrandOption = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything, write nothing")] = False,
    on_duplicate: Annotated[
        str,
        typer.Option("--on-duplicate", help="skip: leave existing members; update: fill their empty fields"),
    ] = "skip",
    status: Annotated[
        str, typer.Option("--status", help="Status of new rows without one: prospect or active")
    ] = ("prospect"),
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the row-level error report (CSV)")
    ] = None,
) -> None:
    """Import members or prospects (CSV/XLSX), de-duplicated on their identifiers; safe to re-run."""
    database_ = database(db)
    actor = _actor(database_, brand, {"imports:write", "members:write", "members:read", "members:pii"})
    with file.open("rb") as fh:
        fmt = detect_format(file.name, fh.read(8))
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecond(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("dry run" if dry_run else "importing", total=None)

    def on_progress(done: int, total: int, message: str) -> None:
        progress.update(task, completed=done, total=total or None)

    try:
        with progress:
            summary = importer.import_members(
                database_,
                actor=actor,
                path=file,
                fmt=fmt,
                dry_run=dry_run,
                on_duplicate=on_duplicate,
                default_status=status,
                progress=on_progress,
                filename=file.name,
            )
    except AppError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        for e in exc.errors:
            console.print(f"  [red]•[/red] {e['field']}: {e['message']}")
        raise typer.Exit(1)
    table = Table(title=f"import #{summary.run_id}" + (" (dry run: nothing written)" if dry_run else ""))
    table.add_column("rows", justify="right")
    table.add_column("would create" if dry_run else "created", justify="right")
    table.add_column("updated", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("rows/s", justify="right")
    table.add_row(
        str(summary.processed_rows),
        str(summary.created),
        str(summary.updated),
        str(summary.skipped),
        f"[red]{summary.failed}[/red]" if summary.failed else "0",
        f"{summary.rows_per_second:,.0f}",
    )
    console.print(table)
    if report is not None:
        with (
            database_.unit_of_work(actor.scope, write=False) as session,
            report.open("w", encoding="utf-8") as out,
        ):
            for chunk in importer.iter_error_report(session, actor=actor, run_id=summary.run_id):
                out.write(chunk)
        console.print(f"error report: {report}")
    elif summary.failed:
        console.print("[yellow]Some rows failed; add --report PATH to get them with their errors.[/yellow]")


@export_app.command("members")
def export_members(
    brand: BrandOption = None,
    db: DbOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default: standard output)")] = None,
    pii: Annotated[
        bool, typer.Option("--pii/--no-pii", help="Phone, e-mail and identifiers unmasked")
    ] = False,
) -> None:
    """Export the brand's members to CSV (the import's columns, so the file can be imported back)."""
    database_ = database(db)
    permissions = {"members:read"} | ({"members:pii"} if pii else set())
    actor = _actor(database_, brand, permissions)
    with database_.unit_of_work(actor.scope) as session:
        export.record_export(session, actor=actor, filters=MemberFilter())
    with database_.unit_of_work(actor.scope, write=False) as session:
        chunks = export.iter_members_csv(session, actor, MemberFilter())
        if out is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            return
        with out.open("w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
    console.print(f"exported to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.add_typer(export_app, name="export")
