"""PROVISIONAL in-process worker handle; the Huey-based worker replaces this module's internals."""

from __future__ import annotations

from huiyuan.kit.db import Database
from huiyuan.settings import Settings


class WorkerHandle:
    def stop(self) -> None:
        return None


def start_in_process_worker(db: Database, settings: Settings) -> WorkerHandle:
    return WorkerHandle()
