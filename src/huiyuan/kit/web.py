"""HTTP plumbing shared by the API and the console: problem-details rendering (RFC 9457), request
ids, body-size limits, the per-request database session and access logs. No domain logic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huiyuan.kit.context import set_request_id
from huiyuan.kit.db import Database, busy_error
from huiyuan.kit.errors import PROBLEM_BASE, AppError, PayloadTooLarge
from huiyuan.kit.logging import get_logger

log = get_logger("huiyuan.http")
PROBLEM_JSON = "application/problem+json"


def problem_response(request: Request, error: AppError) -> JSONResponse:
    body = error.to_problem(instance=request.url.path, request_id=getattr(request.state, "request_id", None))
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_JSON, headers=error.headers)


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] if parts[0] == "body" else parts
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return problem_response(request, exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": _loc_to_field(tuple(e.get("loc", ()))),
                "message": e.get("msg", ""),
                "code": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        from huiyuan.kit.errors import ValidationFailed

        return problem_response(request, ValidationFailed("Some fields are not valid.", errors=errors))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated"}.get(
            exc.status_code, "http-error"
        )
        body = {
            "type": PROBLEM_BASE + code,
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": code,
            "instance": request.url.path,
            "request_id": getattr(request.state, "request_id", None),
        }
        return JSONResponse(
            body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=getattr(exc, "headers", None)
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        busy = busy_error(exc)
        if busy is not None:  # a lock wait or deadlock: worth a retry, not an internal error
            log.warning("database busy", path=request.url.path, error=str(exc).splitlines()[0])
            return problem_response(request, busy)
        log.exception("unhandled error", path=request.url.path)
        body = {
            "type": PROBLEM_BASE + "internal-error",
            "title": "Internal error",
            "status": 500,
            "detail": "Something went wrong on our side; the request id identifies it in the logs.",
            "code": "internal-error",
            "request_id": getattr(request.state, "request_id", None),
        }
        return JSONResponse(body, status_code=500, media_type=PROBLEM_JSON)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


class RequestContextMiddleware:
    """Assigns a request id (or keeps a sane incoming ``X-Request-ID``), binds it to logs, times the
    request and refuses bodies above the configured size with 413 before reading them whole."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isascii() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = set_request_id(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status_holder = {"status": 0}

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(f"Bodies are limited to {self.max_body_bytes} bytes.")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            if not scope["path"].startswith("/static"):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_holder["status"],
                    ms=round(elapsed, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")
            from huiyuan.kit.context import _request_id

            _request_id.reset(token)  # type: ignore[arg-type]

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        error = PayloadTooLarge(f"Bodies are limited to {self.max_body_bytes} bytes.")
        body = error.to_problem(instance=scope["path"], request_id=request_id)
        response = JSONResponse(
            body, status_code=413, media_type=PROBLEM_JSON, headers={"x-request-id": request_id}
        )
        await response(scope, receive, send)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back if it raises.

    Writes (any method but GET/HEAD/OPTIONS) open with ``BEGIN IMMEDIATE`` on SQLite, at their first
    statement: dependencies that need no statement (a cached API key) run before the writer lock is taken.
    """
    db = get_db(request)
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    session = db.session(None, write=write, begin_now=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit before the response is sent, so a failed commit is never reported as success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

Handler = Callable[[Request], Awaitable[Response]]
