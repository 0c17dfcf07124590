"""HTTP routes for custom-field definitions (``/api/v1/custom-fields``): thin — authenticate, call one
verb of ``members.field_definitions``, shape the response. Reads need ``members:read``; changes need
``custom_fields:write``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from huiyuan.auth.deps import require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.members import field_definitions as definitions
from huiyuan.members.custom_field_schemas import (
    CustomFieldCreate,
    CustomFieldList,
    CustomFieldOut,
    CustomFieldUpdate,
)

router = APIRouter(prefix="/api/v1/custom-fields", tags=["custom fields"])

Reader = Annotated[Principal, require("members:read")]
Writer = Annotated[Principal, require("custom_fields:write")]


@router.get("", response_model=CustomFieldList, summary="List the brand's custom fields")
def list_fields(session: SessionDep, actor: Reader, include_retired: bool = False) -> CustomFieldList:
    rows = definitions.list_fields(session, actor=actor, include_retired=include_retired)
    return CustomFieldList(items=[definitions.to_out(d) for d in rows])


@router.post("", response_model=CustomFieldOut, status_code=201, summary="Define a custom field")
def define_field(data: CustomFieldCreate, session: SessionDep, actor: Writer) -> CustomFieldOut:
    return definitions.to_out(definitions.define_field(session, actor=actor, data=data))


@router.get("/{key}", response_model=CustomFieldOut, summary="Get a custom field")
def get_field(key: str, session: SessionDep, actor: Reader) -> CustomFieldOut:
    return definitions.to_out(definitions.get_field(session, actor=actor, key=key))


@router.patch("/{key}", response_model=CustomFieldOut, summary="Change a custom field")
def update_field(key: str, data: CustomFieldUpdate, session: SessionDep, actor: Writer) -> CustomFieldOut:
    return definitions.to_out(definitions.update_field(session, actor=actor, key=key, data=data))


@router.post("/{key}/retire", response_model=CustomFieldOut, summary="Retire a custom field (read-only)")
def retire_field(key: str, session: SessionDep, actor: Writer) -> CustomFieldOut:
    return definitions.to_out(definitions.retire_field(session, actor=actor, key=key))


@router.post("/{key}/reactivate", response_model=CustomFieldOut, summary="Make a retired field writable")
def reactivate_field(key: str, session: SessionDep, actor: Writer) -> CustomFieldOut:
    return definitions.to_out(definitions.reactivate_field(session, actor=actor, key=key))
