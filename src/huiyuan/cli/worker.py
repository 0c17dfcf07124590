"""``huiyuan worker`` (the background worker in the foreground) and ``huiyuan jobs …`` (runs).

Thin: open the database, call the worker or the jobs service, print with Rich.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from huiyuan.cli.common import console, database

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: HUIYUAN_DATABASE_URL)")]

jobs_app = typer.Typer(help="Background job runs and their progress", no_args_is_help=True)


def _status_line(snap: dict[str, Any]) -> Text:
    w = snap["worker"]
    jobs = snap["jobs"]
    d = snap["deliveries"]
    line = Text()
    line.append("outbox ", style="bold")
    line.append(f"pending {snap['pending_events']} · dispatched {w['dispatched']} · ")
    line.append(f"handler failures {w['handler_failures']}", style="red" if w["handler_failures"] else "")
    line.append("   webhooks ", style="bold")
    line.append(f"delivered {w['delivered']} · retrying {d.get('pending', 0)} · ")
    line.append(f"dead {d.get('dead', 0)}", style="red" if d.get("dead") else "")
    line.append("   jobs ", style="bold")
    line.append(
        f"queued {jobs.get('queued', 0)} · running {jobs.get('running', 0)} · "
        f"done {jobs.get('succeeded', 0)} · failed {jobs.get('failed', 0)}"
    )
    if w["last_error"]:
        line.append(f"\nlast error: {w['last_error']}", style="yellow")
    return line


def worker(db: DbOption = None) -> None:
    """Run the background worker (jobs and outbox) in the foreground until Ctrl-C."""
    from huiyuan.jobs.runner import start_in_process_worker
    from huiyuan.settings import get_settings, reset_settings_cache

    if db:
        os.environ["HUIYUAN_DATABASE_URL"] = db
        reset_settings_cache()
    settings = get_settings()
    database_ = database(settings.database_url)

    def _terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    handle = start_in_process_worker(database_, settings)
    console.print(
        f"[green]worker started[/green] · jobs on {type(handle.queue.huey).__name__} · "
        f"outbox every {settings.outbox_poll_seconds}s · Ctrl-C to stop"
    )
    try:
        with Live(Text("starting…"), console=console, refresh_per_second=2, transient=False) as live:
            while True:
                try:
                    live.update(_status_line(handle.snapshot()))
                except Exception as exc:  # the database may be briefly away; keep the worker running
                    live.update(Text(f"status unavailable: {exc}", style="yellow"))
                time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        handle.stop()
        database_.dispose()
    console.print("[green]worker stopped[/green]")


def _progress(done: int, total: int | None) -> str:
    if not total:
        return str(done)
    return f"{done}/{total} ({100 * done / total:.0f}%)"


@jobs_app.command("list")
def list_jobs(
    db: DbOption = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled")] = None,
    kind: Annotated[str | None, typer.Option(help="Job kind, e.g. members.import")] = None,
    limit: Annotated[int, typer.Option(help="How many runs (newest first)")] = 30,
) -> None:
    """List job runs with their progress."""
    from huiyuan.jobs import service

    with database(db).unit_of_work(write=False) as s:
        runs = service.list_runs(s, status=status, kind=kind, before_id=None, limit=limit)
        table = Table(
            "id", "brand", "kind", "status", "progress", "message", "created by", "created", "finished"
        )
        colours = {"failed": "red", "succeeded": "green", "running": "cyan", "cancelled": "yellow"}
        for r in runs:
            table.add_row(
                str(r.id),
                str(r.brand_id or "platform"),
                r.kind,
                Text(r.status, style=colours.get(r.status, "")),
                _progress(r.progress_done, r.progress_total),
                (r.error or r.message or "")[:60],
                r.created_by,
                r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                r.finished_at.strftime("%Y-%m-%d %H:%M:%S") if r.finished_at else "-",
            )
        console.print(table)


@jobs_app.command("resume")
def resume_job(
    run_id: int,
    db: DbOption = None,
    force: Annotated[
        bool, typer.Option(help="Also resume a 'running' run whose worker died (make sure it is not running)")
    ] = False,
) -> None:
    """Queue a failed or cancelled run again; it continues from its last checkpoint."""
    from huiyuan.jobs import service
    from huiyuan.kit.scope import SYSTEM

    with database(db).unit_of_work() as s:
        run = service.resume(s, actor=SYSTEM, run_id=run_id, force=force)
        console.print(f"run {run.id} ({run.kind}) is {run.status}")


@jobs_app.command("cancel")
def cancel_job(run_id: int, db: DbOption = None) -> None:
    """Cancel a queued or running run (a running job stops at its next progress report)."""
    from huiyuan.jobs import service
    from huiyuan.kit.scope import SYSTEM

    with database(db).unit_of_work() as s:
        run = service.cancel(s, actor=SYSTEM, run_id=run_id)
        console.print(f"run {run.id} ({run.kind}) is {run.status}")


def register(app: typer.Typer) -> None:
    """Add ``worker`` and ``jobs`` to the ``huiyuan`` command."""
    app.command("worker")(worker)
    app.add_typer(jobs_app, name="jobs")
