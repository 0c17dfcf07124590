"""Helpers shared by CLI commands: the database for a ``--db`` option, the console for output."""

from __future__ import annotations

from rich.console import Console

from huiyuan.kit.db import Database
from huiyuan.settings import get_settings

console = Console()


def database(url: str | None) -> Database:
    return Database(url or get_settings().database_url)


def db_url(url: str | None) -> str:
    return url or get_settings().database_url
