"""Helpers shared by CLI commands: the database for a ``--db`` option, the console for output,
progress bars for long jobs."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from huiyuan.kit.db import Database
from huiyuan.settings import get_settings

console = Console()


def database(url: str | None) -> Database:
    return Database(url or get_settings().database_url)


def db_url(url: str | None) -> str:
    return url or get_settings().database_url


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:,.0f} rows/s", style="progress.data.speed")


def progress_bars() -> Progress:
    """Bars with counts, rows per second and elapsed time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
    )


class RichReporter:
    """One Rich progress bar per phase (``start``/``advance``/``finish``), labelled by ``labels``."""

    def __init__(self, progress: Progress, labels: Mapping[str, str] | None = None) -> None:
        self.progress = progress
        self.labels = labels or {}
        self.tasks: dict[str, TaskID] = {}

    def start(self, phase: str, total: int) -> None:
        self.tasks[phase] = self.progress.add_task(self.labels.get(phase, phase), total=max(total, 1))

    def advance(self, phase: str, rows: int) -> None:
        self.progress.advance(self.tasks[phase], rows)

    def finish(self, phase: str) -> None:
        task_id = self.tasks[phase]
        task = next(t for t in self.progress.tasks if t.id == task_id)
        self.progress.update(task_id, total=max(task.completed, 1))
        self.progress.stop_task(task_id)
