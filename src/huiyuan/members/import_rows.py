"""One import row, from cells to a validated ``MemberEnroll``: the few spreadsheet conventions that
need translating (男/女, 潜客, 1990/5/20, "跑步|咖啡") and the row's identifier keys for
de-duplication. Validation itself is ``MemberEnroll``'s; this module must not re-implement it, nor
touch the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from pydantic import ValidationError

from huiyuan.kit import pii
from huiyuan.members.import_reader import IDENTIFIER_COLUMNS, Column
from huiyuan.members.schemas import MemberEnroll

_GENDERS = {"男": "male", "女": "female", "m": "male", "f": "female", "未知": "unknown"}
_STATUSES = {"潜客": "prospect", "会员": "active", "正式会员": "active"}
_CHANNELS = {
    "门店": "store",
    "小程序": "mini_program",
    "抖音": "douyin",
    "导入": "import",
    "推荐": "referral",
}
_LIST_SPLIT = re.compile(r"[|;；]")
_CN_DATE = re.compile(r"^(\d{4})\s*[年/.]\s*(\d{1,2})\s*[月/.]\s*(\d{1,2})\s*日?$")


@dataclass
class RowError:
    column: str | None
    code: str
    message: str


@dataclass
class PreparedRow:
    number: int
    cells: list[str | None]
    data: MemberEnroll | None = None
    errors: list[RowError] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (field, blind index or member number)


class RowMapper:
    """Turns one row's cells into a validated ``MemberEnroll`` plus its identifier keys."""

    def __init__(
        self, columns: list[Column | None], default_status: str, tz: tzinfo, list_fields: frozenset[str]
    ) -> None:
        self.columns = columns
        self.list_fields = list_fields  # custom fields whose values are lists (multi-enum)
        self.default_status = default_status
        self.tz = tz
        self.header_of = {c.field: c.header for c in columns if c is not None}

    def prepare(self, number: int, cells: list[str | None]) -> PreparedRow:
        row = PreparedRow(number=number, cells=cells)
        payload: dict[str, Any] = {"enroll_channel": "import", "status": self.default_status}
        identifiers: list[dict[str, str]] = []
        custom: dict[str, Any] = {}
        for col, text in zip(self.columns, cells, strict=False):
            if col is None or text is None:
                continue
            if col.field.startswith("custom."):
                key = col.field.removeprefix("custom.")
                custom[key] = split_list(text) if key in self.list_fields else text
            elif col.field in IDENTIFIER_COLUMNS:
                identifiers += [
                    {"type": col.field, "value": v.strip(), "source": "import"}
                    for v in text.split("|")
                    if v.strip()
                ]
            else:
                payload[col.field] = _convert(col.field, text)
        if any(c is not None for c in cells[len(self.columns) :]):
            row.errors.append(RowError(None, "extra-cells", "the row has more cells than the header"))
            return row
        if identifiers:
            payload["identifiers"] = identifiers
        if custom:
            payload["custom"] = custom
        try:
            data = MemberEnroll.model_validate(payload)
        except ValidationError as exc:
            for e in exc.errors():
                row.errors.append(
                    RowError(
                        self._column(e["loc"], identifiers), e["type"], e["msg"].removeprefix("Value error, ")
                    )
                )
            return row
        if data.enrolled_at is not None and data.enrolled_at.tzinfo is None:
            data.enrolled_at = data.enrolled_at.replace(tzinfo=self.tz)  # the brand's business time
        row.data = data
        if data.member_number:
            row.keys.append(("member_number", data.member_number))
        for kind, value in (("phone", data.phone), ("email", data.email)):
            if value:
                row.keys.append((kind, pii.blind_index(kind, value)))
        row.keys += [(i.type, pii.blind_index(i.type, i.value)) for i in data.identifiers]
        if not row.keys:
            row.errors.append(
                RowError(
                    None,
                    "no-identifier",
                    "a row needs member_number, phone, email or an identifier column so that "
                    "re-running the import cannot create it twice",
                )
            )
        return row

    def _column(self, loc: tuple[Any, ...], identifiers: list[dict[str, str]]) -> str | None:
        if not loc:
            return None
        head = str(loc[0])
        if head == "identifiers" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(identifiers):
            return self.header_of.get(identifiers[loc[1]]["type"])
        if head == "custom" and len(loc) > 1:
            return self.header_of.get(f"custom.{loc[1]}", f"custom.{loc[1]}")
        return self.header_of.get(head, head)

    def error_column(self, app_field: str | None) -> str | None:
        """The file's header for a field named in a service error (``identifiers.card_number`` …)."""
        if not app_field:
            return None
        name = app_field.removeprefix("identifiers.")
        return self.header_of.get(name, app_field)


def split_list(text: str) -> list[str]:
    return [p.strip() for p in _LIST_SPLIT.split(text) if p.strip()]


def _convert(field_name: str, text: str) -> Any:
    low = text.lower()
    if field_name == "gender":
        return _GENDERS.get(low, low)
    if field_name == "status":
        return _STATUSES.get(text, low)
    if field_name == "enroll_channel":
        return _CHANNELS.get(text, low)
    if field_name == "interests":
        return split_list(text)
    if field_name == "birthday" and (m := _CN_DATE.match(text)):
        return f"{int(m[1]):04d}-{int(m[2]):02d}-{int(m[3]):02d}"
    return text
