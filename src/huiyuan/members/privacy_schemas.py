"""Request and response shapes of the data-subject request API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class EraseRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "member request #4711"}]}
    )
    reason: str = Field(
        min_length=1, max_length=200, description="Why (ticket number); kept in the audit log, so no PII"
    )


class ErasureOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": 42,
                    "member_number": "AL00000042",
                    "status": "closed",
                    "erased_at": "2026-05-01T08:00:00Z",
                }
            ]
        }
    )

    member_id: int
    member_number: str
    status: str
    erased_at: datetime
