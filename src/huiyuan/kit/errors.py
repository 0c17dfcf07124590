"""One error hierarchy with stable codes, rendered as RFC 9457 problem details by ``kit.web``.

Every expected failure is an ``AppError`` subclass with a ``code`` that clients may switch on; the
code is also the fragment of the problem ``type`` URI. Unexpected failures become a 500
``internal-error`` with the request id, never a stack trace.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://huiyuan.dev/problems/"


class AppError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self, instance: str | None = None, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        if request_id:
            body["request_id"] = request_id
        body.update(self.extra)
        return body


def field_error(field: str, message: str, code: str = "invalid") -> dict[str, Any]:
    return {"field": field, "message": message, "code": code}


class ValidationFailed(AppError):
    status = 422
    code = "validation-failed"
    title = "The request is not valid"


class NotFound(AppError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "Conflict"


class IdempotencyMismatch(AppError):
    status = 422
    code = "idempotency-key-reused"
    title = "The idempotency key was used with a different request"


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="huiyuan"'})
        super().__init__(detail, **kw)


class PermissionDenied(AppError):
    status = 403
    code = "permission-denied"
    title = "Permission denied"


class BrandRequired(AppError):
    status = 422
    code = "brand-required"
    title = "A brand must be chosen"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        super().__init__(
            detail or "This action works on one brand: send the X-Huiyuan-Brand header with a brand code.",
            **kw,
        )


class RateLimited(AppError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload-too-large"
    title = "The request body is too large"


class CsrfFailed(AppError):
    status = 403
    code = "csrf-failed"
    title = "The form has expired; reload the page"
