"""The tracking API, compatible with the Segment / RudderStack HTTP spec so their client libraries work
unchanged: ``POST /v1/identify|track|page|screen|group|alias|batch`` (not under ``/api/v1``), and the
browser snippet at ``GET /v1/snippet.js``.

* Auth: the source's write key as HTTP Basic user name (``writeKey:``) or as ``writeKey`` in the body.
* Bodies: JSON, gzip when ``Content-Encoding: gzip``; 500 KB per request, 32 KB per message.
* Answers: 200 ``{"success": true, "received", "stored", "duplicates", "flagged", "quarantined"}``
  only after the request's rows are committed; errors as ``{"code": …, "message": …}`` (400 limits
  and malformed bodies, 401 bad key, 403 disabled source, 429 with ``Retry-After``).
* CORS is open (``*``, no credentials): browsers on any site may send to a write key.

Thin: the body is read here, everything else runs in a worker thread (``events.spec`` parses,
``events.service.ingest`` writes) so the event loop keeps accepting requests.

A request is two phases: parsing and checking its batch (Python, holding the GIL) and writing it
(SQLite, one writer at a time). One request at a time parses: requests parsing side by side would
only take turns at the GIL, each slower (measured: 4 concurrent clients got 30 % less through than
1, at 70 % more CPU per event).

In a server of one process the phases of two requests overlap: the write transaction begins at its
first statement, not when the session opens, and the parsing request lets the next one in when its
write transaction begins. In a process of several (``huiyuan serve --workers N``) a request parses
and writes before the next one of that process starts: the other processes provide the overlap,
and a parse beside a write of the same process starves the write. Its statement releases the GIL
for every row and waits for it again while the parse holds it (up to the 5 ms switch interval), so
the write, and with it the database's writer turn that the other processes wait for, lasted as long
as the parse (measured with two processes: 11 % more events/s and 9 % less CPU per event without
the overlap, docs/events-performance.md).

Several server processes on one SQLite file take turns as every writer does (``kit.db``: an OS file
lock beside the database, ``<file>-writers.lock``, held from just before the write transaction
begins until after it has committed). Ids still commit in id order because SQLite admits one writer
at a time, whichever the process.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from huiyuan.events import service, sources, spec
from huiyuan.events.snippet import ETAG, SNIPPET_JS
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database, busy_error, set_scope
from huiyuan.kit.errors import AppError
from huiyuan.kit.scope import Scope

router = APIRouter(tags=["tracking (Segment HTTP spec)"])

CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Stored (committed): counts of new, duplicate, flagged and quarantined messages",
        "content": {
            "application/json": {
                "example": {
                    "success": True,
                    "received": 2,
                    "stored": 2,
                    "duplicates": 0,
                    "flagged": 0,
                    "quarantined": 0,
                }
            }
        },
    },
    400: {
        "description": "Not JSON / not gzip (`invalid-json`, `invalid-encoding`), malformed "
        "(`invalid-request`), over 500 KB (`batch-too-large`) or a message over 32 KB (`message-too-large`)",
        "content": {"application/json": {"example": {"code": "batch-too-large", "message": "…"}}},
    },
    401: {"description": "No or unknown write key (`unauthenticated`)"},
    403: {"description": "The source is disabled (`source-disabled`)"},
    429: {"description": "The source's rate limit (`rate-limited`); wait `Retry-After` seconds"},
}
KINDS = ("identify", "track", "page", "screen", "group", "alias", "batch")
_CONTEXT = {"library": {"name": "analytics-python", "version": "2.3.3"}, "locale": "zh-CN"}
EXAMPLES: dict[str, dict[str, Any]] = {
    "identify": {
        "userId": "LX00001234",
        "anonymousId": "3f1c7d2e-8a4b-4c55-9e1f-2b7a6c0d9e11",
        "traits": {"name": "王芳", "phone": "13800138000", "city": "上海"},
        "context": {
            **_CONTEXT,
            "externalIds": [{"id": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "type": "wechat_openid"}],
        },
        "timestamp": "2026-05-01T10:00:00+08:00",
        "messageId": "ajs-6f1e0d2c9b8a",
    },
    "track": {
        "userId": "LX00001234",
        "event": "Product Viewed",
        "properties": {"sku": "LX-TOP-0001", "price": 399.0, "currency": "CNY"},
        "context": _CONTEXT,
        "timestamp": "2026-05-01T10:00:05+08:00",
        "messageId": "ajs-6f1e0d2c9b8b",
    },
    "page": {
        "anonymousId": "3f1c7d2e-8a4b-4c55-9e1f-2b7a6c0d9e11",
        "name": "Product",
        "properties": {"url": "https://shop.example.cn/p/LX-TOP-0001", "title": "羊毛针织衫"},
        "timestamp": "2026-05-01T10:00:03+08:00",
        "messageId": "ajs-6f1e0d2c9b8c",
    },
    "screen": {
        "userId": "LX00001234",
        "name": "Member Card",
        "properties": {"tab": "points"},
        "timestamp": "2026-05-01T10:01:00+08:00",
        "messageId": "ajs-6f1e0d2c9b8d",
    },
    "group": {
        "userId": "LX00001234",
        "groupId": "family-8812",
        "traits": {"name": "家庭卡 8812", "plan": "family"},
        "messageId": "ajs-6f1e0d2c9b8e",
    },
    "alias": {
        "previousId": "3f1c7d2e-8a4b-4c55-9e1f-2b7a6c0d9e11",
        "userId": "LX00001234",
        "messageId": "ajs-6f1e0d2c9b8f",
    },
}
EXAMPLES["batch"] = {
    "batch": [
        {"type": "page", **EXAMPLES["page"]},
        {"type": "track", **EXAMPLES["track"]},
    ],
    "sentAt": "2026-05-01T10:00:06+08:00",
}


def basic_user(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic header (Segment sends ``base64(writeKey + ":")``)."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credential.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


_parsing = threading.Lock()  # held by the one request that is parsing and checking its batch
_this_thread = threading.local()


def _next_may_parse(*_: Any) -> None:
    """Hand the parsing over (idempotent; a no-op in a thread that does not hold it)."""
    if getattr(_this_thread, "parsing", False):
        _this_thread.parsing = False
        _parsing.release()


def _write_begins(*_: Any) -> None:
    """A write transaction begins: the next request may parse beside it if this one overlaps."""
    if getattr(_this_thread, "overlap", False):
        _next_may_parse()


_writers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _writer(db: Database) -> Engine:
    """The database's engine with connections that begin as writers (``BEGIN IMMEDIATE`` on SQLite,
    behind the file's writer turn, ``kit.db``) and hand the parsing over when they do (``overlap``)."""
    writer = _writers.get(db.engine)
    if writer is None:
        writer = db.engine.execution_options(sqlite_immediate=True)
        # Runs before the engine's own ``begin`` (the writer turn and ``BEGIN IMMEDIATE``).
        event.listen(writer, "begin", _write_begins)
        _writers[db.engine] = writer
    return writer


@contextmanager
def write_when_needed(db: Database, scope: Scope) -> Iterator[Session]:
    """``db.unit_of_work`` whose write transaction starts at the first statement rather than when
    the block is entered. Commits when the block finishes, rolls back when it raises."""
    session = db.sessionmaker(bind=_writer(db))
    set_scope(session, scope)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def collect(
    db: Database,
    *,
    raw: bytes,
    kind: str,
    authorization: str | None,
    content_encoding: str | None,
    received_at: datetime,
    overlap: bool = True,
) -> service.IngestResult:
    """One tracking request from body bytes to committed rows. ``overlap``: the next request of this
    process may parse while this one writes (a server of one process)."""
    _parsing.acquire()
    _this_thread.parsing = True
    _this_thread.overlap = overlap
    try:
        body, size = spec.decode_body(raw, content_encoding)
        write_key = basic_user(authorization) or body.get("writeKey")
        env = spec.envelope(body, kind, body_bytes=size)
        key = write_key if isinstance(write_key, str) else None
        source = sources.recent_source(key)
        plan = service.cached_plan(source) if source is not None else None
        if source is None or plan is None:
            with db.session() as session:
                source = sources.authenticate(session, key)
                plan = service.compiled_plan(session, source)
            sources.remember_source(source)
        # ``ingest`` checks the rate and prepares every row before its first statement, which
        # begins the write transaction and lets the next request parse.
        with write_when_needed(db, Scope(brand_id=source.brand_id)) as session:
            return service.ingest(session, source=source, env=env, plan=plan, received_at=received_at)
    finally:
        _next_may_parse()


# The worker threads of the tracking requests. A plain executor hands a call over in ~30 µs less CPU
# than anyio's thread pool (run_in_threadpool), measured: 49–64 against 82–91 µs a call. Four threads:
# one request parses and one writes at a time (``collect``), the others wait their turn.
_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tracking")


async def answer(
    app: Any, kind: str, body: Callable[[], Awaitable[bytes]], headers: Headers
) -> tuple[int, dict[str, str], bytes]:
    """One tracking request of ``app`` (its ``state.db`` and ``state.settings``): the status, the
    headers and the JSON body of the answer. ``body`` reads the request's body (a refusal while
    reading, such as the server's body limit, is answered in the same shape). The parsing and
    writing run in a worker thread so the event loop keeps accepting requests."""
    received_at = utcnow()
    try:
        call = functools.partial(
            collect,
            app.state.db,
            raw=await body(),
            kind=kind,
            authorization=headers.get("authorization"),
            content_encoding=headers.get("content-encoding"),
            received_at=received_at,
            overlap=app.state.settings.serve_workers <= 1,
        )
        # The request's context (its id in the log lines) goes along, as with run_in_threadpool.
        result = await asyncio.get_running_loop().run_in_executor(
            _threads, contextvars.copy_context().run, call
        )
    except AppError as exc:
        return _error(exc)
    except DBAPIError as exc:
        busy = busy_error(exc)
        if busy is None:
            raise
        return _error(busy)  # nothing was kept: the client library resends the batch
    return 200, CORS, orjson.dumps(result.body())


def _error(error: AppError) -> tuple[int, dict[str, str], bytes]:
    return (
        error.status,
        {**CORS, **error.headers},
        orjson.dumps({"code": error.code, "message": error.detail}),
    )


def _endpoint(kind: str):  # type: ignore[no-untyped-def]
    """The route as declared to FastAPI (OpenAPI, and any app built without ``TrackingRoutes``)."""

    async def endpoint(request: Request) -> Response:
        status, headers, body = await answer(request.app, kind, request.body, request.headers)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    endpoint.__name__ = f"collect_{kind}"
    return endpoint


PATHS = {f"/v1/{kind}": kind for kind in KINDS}


class TrackingRoutes:
    """ASGI middleware that answers ``POST /v1/<kind>`` itself, ahead of FastAPI's routing and
    endpoint machinery: the busiest path of the product, where that machinery cost more per request
    than the rest of an empty batch (measured in process: 339 µs a request before, docs/events-
    performance.md). Every other request passes on. It sits inside ``RequestContextMiddleware``
    (request id, log line, body limit) and inside Starlette's error middleware (an unexpected error
    is answered 500 as anywhere else); the routes stay declared on the router for OpenAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        kind = PATHS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if kind is None:
            await self.app(scope, receive, send)
            return

        async def read() -> bytes:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return b"".join(chunks)

        try:
            status, headers, body = await answer(scope["app"], kind, read, Headers(scope=scope))
        except ClientDisconnect:
            return  # the client went away before its body was read: nothing is written
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})


_SUMMARIES = {
    "identify": "Identify a user (traits, externalIds)",
    "track": "Record an action (event + properties)",
    "page": "Record a page view",
    "screen": "Record an app screen view",
    "group": "Associate a user with a group",
    "alias": "Link a previous id to a user id",
    "batch": "Send up to 500 KB of mixed messages",
}
for _kind in KINDS:
    router.add_api_route(
        f"/v1/{_kind}",
        _endpoint(_kind),
        methods=["POST"],
        summary=_SUMMARIES[_kind],
        responses=RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "additionalProperties": True},
                        "example": EXAMPLES[_kind],
                    }
                },
            }
        },
    )


@router.options("/v1/{path:path}", include_in_schema=False)
def preflight(path: str) -> Response:
    return Response(status_code=204, headers=PREFLIGHT)


@router.get("/v1/snippet.js", summary="The browser snippet: page views and element clicks")
def snippet(request: Request) -> Response:
    headers = {**CORS, "Cache-Control": "public, max-age=3600", "ETag": ETAG}
    if request.headers.get("if-none-match") == ETAG:
        return Response(status_code=304, headers=headers)
    return Response(SNIPPET_JS, media_type="application/javascript; charset=utf-8", headers=headers)
