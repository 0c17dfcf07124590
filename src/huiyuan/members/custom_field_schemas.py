"""Request and response shapes of the custom-field definitions API (``/api/v1/custom-fields``).

Only shapes and per-field syntax live here; whether a definition makes sense as a whole (options for
enums, ranges for numbers, a default that fits) is checked by ``members.field_definitions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

FieldType = Literal[
    "string", "text", "integer", "decimal", "boolean", "date", "datetime", "enum", "multi_enum"
]
Bound = StrictInt | StrictFloat | StrictStr
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class FieldLabels(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    zh: str = Field(min_length=1, max_length=120, examples=["鞋码"])
    en: str = Field(min_length=1, max_length=120, examples=["Shoe size"])


class FieldLabelsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    zh: str | None = Field(default=None, min_length=1, max_length=120)
    en: str | None = Field(default=None, min_length=1, max_length=120)


class CustomFieldCreate(BaseModel):
    """Define a custom field for the brand; it can be written on members at once, no migration."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "key": "shoe_size",
                    "labels": {"zh": "鞋码", "en": "Shoe size"},
                    "type": "integer",
                    "min": 30,
                    "max": 50,
                },
                {
                    "key": "skin_type",
                    "labels": {"zh": "肤质", "en": "Skin type"},
                    "type": "enum",
                    "options": ["dry", "oily", "combination"],
                    "required": True,
                    "default": "combination",
                },
            ]
        },
    )

    key: str = Field(pattern=KEY_PATTERN, description="Lower-case key, unique in the brand")
    labels: FieldLabels
    type: FieldType
    required: bool = False
    unique: bool = False
    default: Any = Field(default=None, description="Applied when a member is created without a value")
    pattern: str | None = Field(
        default=None, max_length=300, description="string/text only: the whole value must match"
    )
    min: Bound | None = Field(
        default=None, description="integer/decimal: value; date/datetime: ISO; string/text: length"
    )
    max: Bound | None = None
    options: list[str] = Field(default_factory=list, max_length=500, description="enum/multi_enum")
    position: int = Field(default=0, ge=0, le=1_000_000)


class CustomFieldUpdate(BaseModel):
    """Change a definition. Options may only grow; type, unique, pattern and ranges are fixed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"labels": {"en": "Shoe size (EU)"}, "position": 2}]},
    )

    labels: FieldLabelsPatch | None = None
    options: list[str] | None = Field(default=None, max_length=500)
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    required: bool | None = None
    default: Any = None
    type: FieldType | None = Field(default=None, description="Accepted only if unchanged")


class CustomFieldOut(BaseModel):
    key: str
    labels: FieldLabels
    type: str
    required: bool
    unique: bool
    default: Any
    pattern: str | None
    min: int | str | None
    max: int | str | None
    options: list[str]
    position: int
    status: str = Field(description="active or retired")
    created_at: datetime
    updated_at: datetime


class CustomFieldList(BaseModel):
    items: list[CustomFieldOut]
