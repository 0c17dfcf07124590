"""``GET /api/v1/warehouse/status``: how fresh the warehouse is, per table."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from huiyuan.auth.deps import require
from huiyuan.kit.scope import Principal
from huiyuan.settings import get_settings
from huiyuan.warehouse import freshness

router = APIRouter(prefix="/api/v1")
Reader = Annotated[Principal, require("analytics:read")]
TAGS: list[str | Enum] = ["analytics"]


class TableFreshness(BaseModel):
    table: str
    rows: int
    cursor: str | int | None
    synced_at: datetime | None


class WarehouseStatus(BaseModel):
    path: str
    tables: list[TableFreshness]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "path": "./huiyuan-warehouse.duckdb",
                    "tables": [
                        {
                            "table": "fact_orders",
                            "rows": 195210,
                            "cursor": "2026-11-23T22:45:48.476288",
                            "synced_at": "2026-11-23T22:50:02.118Z",
                        }
                    ],
                }
            ]
        }
    }


@router.get(
    "/warehouse/status",
    response_model=WarehouseStatus,
    tags=TAGS,
    summary="Rows, cursor and last sync per warehouse table (a brand key counts its own rows)",
    responses={503: {"description": "A sync holds the warehouse file; retry shortly"}},
)
def status(actor: Reader) -> WarehouseStatus:
    """Platform-wide row counts for platform callers; a brand's callers see their brand's rows."""
    path = get_settings().warehouse_path
    rows = freshness(path, brand_id=actor.scope.brand_id)
    return WarehouseStatus(path=path, tables=[TableFreshness(**r) for r in rows])
