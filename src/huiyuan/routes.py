"""Where every domain's router is mounted. Adding a domain = one line here."""

from __future__ import annotations

from fastapi import FastAPI


def include_routers(app: FastAPI) -> None:
    from huiyuan.members.api import router as members
    from huiyuan.system.api import router as system

    app.include_router(system)
    app.include_router(members)
