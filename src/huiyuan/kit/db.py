"""Engines, sessions, the declarative base and the tenancy filter.

Owns: how a connection is opened (SQLite WAL + ``BEGIN IMMEDIATE`` for writes, PostgreSQL through
psycopg 3), the unit of work that commits or rolls back, and the *one place* where tenancy is applied:
every ORM query on a session whose scope names a brand is filtered to that brand's rows, and a flush
that would write another brand's row is refused. Must not contain any domain logic.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from sqlalchemy import ForeignKey, MetaData, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    sessionmaker,
    with_loader_criteria,
)

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, NotFound
from huiyuan.kit.scope import Scope
from huiyuan.kit.types import IdType, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TimestampMixin:
    created_at: Mapped[Any] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[Any] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)


class BrandScoped:
    """Marker: the tenancy filter applies to every mapped subclass (``brand_id`` column)."""

    brand_id: Mapped[int | None]


class BrandOwned(BrandScoped):
    """Rows that belong to exactly one brand."""

    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), index=True, nullable=False)


class BrandOptional(BrandScoped):
    """Rows of one brand, or of the platform when ``brand_id`` is null (hidden from brand scopes)."""

    brand_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("brands.id"), index=True)


class TenancyViolation(NotFound):
    """A write aimed at another brand's row; answered like a missing row so nothing leaks."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take over transaction control from pysqlite so BEGIN IMMEDIATE and SAVEPOINT work.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_HOLDS_WRITE_LOCK = "huiyuan_holds_write_lock"
WRITE_LOCK_TIMEOUT_SECONDS = 30.0


class DatabaseBusy(AppError):
    status = 503
    code = "database-busy"
    title = "The database is busy; retry shortly"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kwargs)


# SQLSTATEs of PostgreSQL errors that roll the transaction back and that a retry may not meet:
# serialization failure, deadlock, lock not available (``lock_timeout``).
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def busy_error(exc: BaseException) -> DatabaseBusy | None:
    """The ``DatabaseBusy`` (503, ``Retry-After``) that a database error amounts to, if it is one:
    SQLite still locked after its busy timeout, or a PostgreSQL transaction rolled back by a lock
    conflict or deadlock. A retry of the request is then safe (nothing of it was kept) and every write
    is idempotent. Anything else: None."""
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return DatabaseBusy("A concurrent transaction held what this one needed; retry it.")
    if isinstance(exc, OperationalError) and any(m in str(orig).lower() for m in _SQLITE_BUSY):
        return DatabaseBusy("Another write held the database for too long.")
    return None


class _FlockWaiter:
    """Waits in a blocking ``flock`` on behalf of a writer, so that the writer can give up.

    ``flock`` has no timeout, and a thread blocked in it cannot be woken. The first try is
    non-blocking in the writer's own thread; only when another process holds the turn is the wait
    handed to this process's waiter thread, and the writer waits for it on an event with a timeout.
    A wait the writer gave up on is let go as soon as the waiter gets it. While a wait is still
    with the waiter, the next writer queues behind it instead of trying the file itself: the lock
    belongs to the open file, so a try of its own could succeed on the waiter's late grant and then
    lose the lock when the waiter lets that grant go."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.requests: queue.SimpleQueue[_FlockRequest] = queue.SimpleQueue()
        self._count = threading.Lock()
        self._outstanding = 0
        threading.Thread(target=self._serve, name="huiyuan-sqlite-turn", daemon=True).start()

    @property
    def idle(self) -> bool:
        with self._count:
            return self._outstanding == 0

    def _serve(self) -> None:
        while True:
            request = self.requests.get()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            with request.mutex:
                if request.abandoned:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                else:
                    request.granted = True
            with self._count:
                self._outstanding -= 1
            request.done.set()

    def wait(self, timeout: float) -> bool:
        request = _FlockRequest()
        with self._count:
            self._outstanding += 1
        self.requests.put(request)
        if request.done.wait(timeout):
            return True
        with request.mutex:
            if request.granted:  # got it just as the wait ran out
                return True
            request.abandoned = True
        return False


class _FlockRequest:
    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.done = threading.Event()
        self.granted = False
        self.abandoned = False


class _WriterTurn:
    """One writer at a time on a SQLite file: a lock among this process's threads, then, for a file
    database, an exclusive ``flock`` on ``<file>-writers.lock`` among processes (``huiyuan serve
    --workers N``, a separate ``huiyuan worker``). The kernel wakes a waiter the moment the holder
    lets go, where SQLite's own busy handler would have it sleep and poll (measured with two server
    processes and 16 clients posting orders: p99 679 ms).

    The whole wait, for both locks, is bounded by ``WRITE_LOCK_TIMEOUT_SECONDS`` (as SQLite's own
    ``busy_timeout``): a writer that waited that long answers ``DatabaseBusy`` (503) instead of
    waiting for ever behind a process that keeps its transaction open. A holder that dies lets go
    with its open files."""

    def __init__(self, path: str | None) -> None:
        self.lock = threading.Lock()
        self.path = path
        self._fd: int | None = None
        self._waiter: _FlockWaiter | None = None
        self._pid = 0

    def acquire(self) -> None:
        deadline = time.monotonic() + WRITE_LOCK_TIMEOUT_SECONDS
        if not self.lock.acquire(timeout=WRITE_LOCK_TIMEOUT_SECONDS):
            raise DatabaseBusy("Another write held the database for too long.")
        if self.path is None:
            return
        try:
            if self._fd is None or self._pid != os.getpid():
                # A forked child opens its own: a shared open file would share the lock too (and the
                # parent's waiter thread does not exist in the child).
                self._fd = os.open(self.path + "-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
                self._waiter = None
                self._pid = os.getpid()
            if self._waiter is None or self._waiter.idle:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    pass
            if self._waiter is None:
                self._waiter = _FlockWaiter(self._fd)
            if not self._waiter.wait(max(0.0, deadline - time.monotonic())):
                raise DatabaseBusy("Another process held the database for too long.")
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()


_turns: dict[str | None, _WriterTurn] = {}
_turns_lock = threading.Lock()


def writer_turn(engine: Engine) -> _WriterTurn:
    """The turn of the engine's SQLite file, shared by every engine of this process on that file;
    an in-memory database has a turn of its own (its lock only)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return _WriterTurn(None)
    path = os.path.abspath(database)
    with _turns_lock:
        turn = _turns.get(path)
        if turn is None:
            turn = _turns[path] = _WriterTurn(path)
        return turn


def _install_sqlite_writer_lock(engine: Engine) -> None:
    """Writers open with ``BEGIN IMMEDIATE`` after taking the file's writer turn (``_WriterTurn``).

    ``BEGIN IMMEDIATE``: a deferred transaction that later writes fails with ``SQLITE_BUSY`` when
    another writer committed since its snapshot, which no retry inside it can fix.
    The turn: SQLite admits one writer at a time anyway, and its busy handler makes waiters sleep
    and poll, so under concurrent requests a waiter can lose the race again and again (measured:
    p99 of 9 s with 16 clients). Queueing writers on a lock first hands the database over at once.
    """
    turn = writer_turn(engine)

    def begin(conn: Any) -> None:
        if not conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN")
            return
        turn.acquire()
        conn.info[_HOLDS_WRITE_LOCK] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            conn.info.pop(_HOLDS_WRITE_LOCK, None)
            turn.release()
            raise

    def commit(conn: Any) -> None:
        # SQLAlchemy announces a commit before it runs it: releasing the lock then would let the next
        # writer's ``BEGIN IMMEDIATE`` meet SQLite's lock still held and sleep in its busy handler
        # (1, 2, 5, 10 … ms). So the transaction is committed here first, and SQLAlchemy's own COMMIT
        # that follows has nothing left to do. Should it fail, the lock is kept: SQLAlchemy commits
        # again, reports the error as usual, and the rollback that follows releases the lock.
        if not conn.info.get(_HOLDS_WRITE_LOCK):
            return
        try:
            conn.connection.dbapi_connection.commit()
        except Exception:
            return
        conn.info.pop(_HOLDS_WRITE_LOCK, None)
        turn.release()

    def rollback(conn: Any) -> None:
        # Likewise rolled back before the lock is released (whatever the outcome).
        if not conn.info.pop(_HOLDS_WRITE_LOCK, False):
            return
        try:
            conn.connection.dbapi_connection.rollback()
        except Exception:
            pass  # SQLAlchemy's own ROLLBACK follows and reports it
        finally:
            turn.release()

    def reset(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        # A connection returned to the pool without commit/rollback events (e.g. invalidated).
        if connection_record.info.pop(_HOLDS_WRITE_LOCK, False):
            turn.release()

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", commit)
    event.listen(engine, "rollback", rollback)
    event.listen(engine.pool, "reset", reset)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if (
            ":memory:" not in url
            and url not in ("sqlite://", "sqlite+pysqlite://")
            and "poolclass" not in kwargs
        ):
            # Connections are kept for as many requests as the thread pool runs at once (40): with
            # the default 5 every busy second opened and closed connections (and ran their PRAGMAs).
            kwargs.setdefault("pool_size", 40)
            kwargs.setdefault("max_overflow", 10)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        _install_sqlite_writer_lock(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def scope_of(session: Session) -> Scope | None:
    return session.info.get("scope")


def set_scope(session: Session, scope: Scope | None) -> None:
    session.info["scope"] = scope


@event.listens_for(Session, "do_orm_execute")
def _apply_tenancy(state: ORMExecuteState) -> None:
    scope: Scope | None = state.session.info.get("scope")
    if scope is None or scope.brand_id is None:
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return
    brand_id = scope.brand_id
    state.statement = state.statement.options(
        with_loader_criteria(BrandOwned, lambda cls: cls.brand_id == brand_id, include_aliases=True),
        with_loader_criteria(BrandOptional, lambda cls: cls.brand_id == brand_id, include_aliases=True),
    )


@event.listens_for(Session, "before_flush")
def _guard_tenancy(session: Session, _ctx: Any, _instances: Any) -> None:
    scope: Scope | None = session.info.get("scope")
    if scope is None or scope.brand_id is None:
        return
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(obj, BrandScoped) and obj.brand_id != scope.brand_id:
            raise TenancyViolation(detail="No such object in this brand.")


class Database:
    """An engine and its session factory; one per process (or per test database)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self._checkpoints: Any = None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self, scope: Scope | None = None, *, write: bool = False, begin_now: bool = True) -> Session:
        """A session; ``write`` makes its transactions writers (``BEGIN IMMEDIATE`` on SQLite), from
        now or, with ``begin_now=False``, from its first statement (so work done before that first
        statement does not hold SQLite's writer lock)."""
        session = self.sessionmaker(bind=self._writer) if write and not begin_now else self.sessionmaker()
        session.info["scope"] = scope
        if write and begin_now:
            begin_write(session)
        return session

    @cached_property
    def _writer(self) -> Engine:
        # The same engine and pool, whose connections begin as writers (``_install_sqlite_writer_lock``).
        return self.engine.execution_options(sqlite_immediate=True)

    @contextmanager
    def unit_of_work(self, scope: Scope | None = None, *, write: bool = True) -> Iterator[Session]:
        """A transaction that commits if the block finishes and rolls back if it raises."""
        session = self.session(scope, write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def start_checkpoints(self) -> None:
        """For a long-running process on a SQLite file: checkpoint in a thread of its own instead of
        inside writers' commits (``kit.checkpoints``); stopped by ``dispose``. Elsewhere a no-op."""
        from huiyuan.kit import checkpoints

        if self._checkpoints is None:
            self._checkpoints = checkpoints.start(self.engine)

    def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.engine.dispose()


def begin_write(session: Session) -> None:
    """Open the session's transaction as a writer (``BEGIN IMMEDIATE`` on SQLite)."""
    session.connection(execution_options={"sqlite_immediate": True})


@contextmanager
def reads_before_write(session: Session) -> Iterator[None]:
    """Run the reads a write is based on before the write's transaction, outside SQLite's writer lock.

    On SQLite, when the session's transaction has not begun yet (a request's session begins at its
    first statement) and nothing is pending, the block runs in a reading transaction (plain
    ``BEGIN``), committed when the block ends; the statements after it begin a writer transaction of
    their own. The writer lock is then held only for the writes, not for the look-ups and the checks
    and computing between them (on two cores the holder of the lock often waits for the CPU).
    What was read may change before the write begins: the writes must stand on constraints (unique
    keys, foreign keys), not on what was read. Anywhere else (PostgreSQL, a transaction already
    open) the block is part of the session's transaction, as without it. If the block raises, the
    reading transaction is left to the session's owner to roll back."""
    if (
        session.in_transaction()
        or session.get_bind().dialect.name != "sqlite"
        or session.new
        or session.dirty
        or session.deleted
    ):
        yield
        return
    session.connection(execution_options={"sqlite_immediate": False})
    yield
    session.commit()


def advisory_lock(session: Session, name: str) -> None:
    """Queue on ``name`` until this transaction ends (PostgreSQL advisory lock); on SQLite a no-op,
    since ``BEGIN IMMEDIATE`` serialises writers already. Used where writers must meet on a key
    (an idempotency key) rather than on a row that may not exist yet."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(name.encode()).digest()
    session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))
