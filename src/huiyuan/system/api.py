from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from huiyuan import __version__
from huiyuan.kit.web import SessionDep

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness and database check")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}


@router.get("/ping", summary="Trivial endpoint (benchmark baseline)", include_in_schema=False)
def ping() -> dict[str, str]:
    return {"pong": "ok"}
