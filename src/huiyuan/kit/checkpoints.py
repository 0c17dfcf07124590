"""SQLite checkpoints in the background, for the long-running processes (the server, the worker).

In WAL mode SQLite copies the write-ahead log back into the database file (a *checkpoint*) when the
log passes ``wal_autocheckpoint`` pages (1,000 by default), inside the ``COMMIT`` of whichever
writer crossed the line, and fsyncs twice. That writer pays for everyone: it still holds the
writers' turn (``kit.db``) while it checkpoints, so every other writer waits too. Measured with the
rows of ``/v1/batch`` (plain ``sqlite3``, batches of 100): the commit took 30–36 µs per event with
the default, 11–13 µs with no automatic checkpoint (docs/events-performance.md).

``Checkpoints`` moves that work to a thread of its own: every ``interval`` seconds it runs
``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection, which copies what it can without waiting
for readers or writers (the sqlite3 module lets go of the GIL for it). SQLite starts the log again
from its beginning only when a writer finds all of it copied, which under a steady stream of writers
a checkpoint beside them rarely leaves; so once the log holds ``RESTART_PAGES``, the thread takes
the writers' turn (``kit.db``) and checkpoints again, now copying only what was committed since its
first pass, and the next writer starts the log afresh. The process's own connections checkpoint only
past ``SAFETY_PAGES``, so the log stays bounded even if the thread falls behind (a long reader, a
stalled disk).

Written by hand: SQLite and SQLAlchemy have no background checkpointer; this is a loop around one
PRAGMA. PostgreSQL and in-memory databases need none (``start`` returns None).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.25
# From this many pages in the log (~8 MB) the thread checkpoints again with writers held off.
RESTART_PAGES = 2_000
# The process's connections checkpoint themselves past this many pages (~40 MB of log).
SAFETY_PAGES = 10_000


def _safety_net(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={SAFETY_PAGES}")
    cur.close()


class Checkpoints:
    """A thread that checkpoints one SQLite database file until ``stop``."""

    def __init__(self, path: str, turn: Any = None, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.turn = turn  # ``kit.db._WriterTurn`` of the file: held for a checkpoint that restarts the log
        self.interval = interval
        self.runs = 0
        self.restarts = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)

    def start(self) -> Checkpoints:
        self._thread.start()
        return self

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                self.checkpoint(connection)
            self.checkpoint(connection)
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> None:
        """One pass; a second with the writers' turn held when the log has grown long."""
        try:
            _busy, pages, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.runs += 1
            if pages >= RESTART_PAGES and self.turn is not None:
                self.turn.acquire()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.restarts += 1
                finally:
                    self.turn.release()
        except Exception as exc:  # a busy lock, a disk error, a turn not had in time: next time
            self.errors += 1
            if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                log.warning("sqlite checkpoint failed (%s times so far): %s", self.errors, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


def start(engine: Engine, interval: float = INTERVAL_SECONDS) -> Checkpoints | None:
    """Checkpoint the engine's SQLite file in the background from now on, and let its connections
    checkpoint only past ``SAFETY_PAGES`` (the pool is emptied, so every connection opened from now on
    has that setting). None for anything but a SQLite file."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return None
    from huiyuan.kit.db import writer_turn

    event.listen(engine, "connect", _safety_net)
    engine.dispose()
    return Checkpoints(path, writer_turn(engine), interval).start()
