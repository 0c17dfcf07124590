"""Response shapes of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobRunOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "brand_id": 1,
                    "kind": "members.import",
                    "status": "running",
                    "progress_done": 1200,
                    "progress_total": 5000,
                    "percent": 24.0,
                    "message": "importing rows",
                    "params": {"upload_id": 7},
                    "result": None,
                    "error": None,
                    "attempts": 1,
                    "created_by": "user:alice",
                    "created_at": "2026-05-01T08:00:00Z",
                    "started_at": "2026-05-01T08:00:01Z",
                    "finished_at": None,
                }
            ]
        },
    )

    id: int
    brand_id: int | None
    kind: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    progress_done: int
    progress_total: int | None
    percent: float | None = Field(default=None, description="progress_done / progress_total × 100")
    message: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
