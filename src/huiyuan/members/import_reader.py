"""Reading member import files: header mapping (English and Chinese column names) and streaming rows
out of CSV and XLSX files without loading them whole.

Owns: which column names mean which member field, how a cell becomes text, how CSV encodings (UTF-8
with or without Excel's BOM, GB18030 from Chinese Excel) are recognised. Must not validate values
(``MemberEnroll`` and the members service do that) and must not touch the database.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.members.models import IDENTIFIER_TYPES

FORMATS = ("csv", "xlsx")
# Identifier types that have a column of their own; phone and e-mail are member attributes.
IDENTIFIER_COLUMNS = tuple(t for t in IDENTIFIER_TYPES if t not in ("phone", "email"))
PII_FIELDS = frozenset({"phone", "email", *IDENTIFIER_COLUMNS})
MEMBER_FIELDS = (
    "member_number",
    "name",
    "gender",
    "birthday",
    "phone",
    "email",
    "province",
    "city",
    "occupation",
    "education",
    "income_band",
    "interests",
    "enroll_channel",
    "enroll_source",
    "enroll_store_code",
    "referrer_member_number",
    "status",
    "enrolled_at",
)

ALIASES: dict[str, str] = {
    "member_no": "member_number",
    "会员号": "member_number",
    "会员编号": "member_number",
    "姓名": "name",
    "名字": "name",
    "sex": "gender",
    "性别": "gender",
    "生日": "birthday",
    "出生日期": "birthday",
    "birth_date": "birthday",
    "date_of_birth": "birthday",
    "mobile": "phone",
    "手机": "phone",
    "手机号": "phone",
    "手机号码": "phone",
    "电话": "phone",
    "e_mail": "email",
    "mail": "email",
    "邮箱": "email",
    "电子邮箱": "email",
    "电子邮件": "email",
    "省": "province",
    "省份": "province",
    "城市": "city",
    "市": "city",
    "职业": "occupation",
    "学历": "education",
    "教育程度": "education",
    "income": "income_band",
    "收入": "income_band",
    "收入水平": "income_band",
    "收入区间": "income_band",
    "兴趣": "interests",
    "兴趣爱好": "interests",
    "爱好": "interests",
    "channel": "enroll_channel",
    "渠道": "enroll_channel",
    "注册渠道": "enroll_channel",
    "入会渠道": "enroll_channel",
    "source": "enroll_source",
    "来源": "enroll_source",
    "注册来源": "enroll_source",
    "store_code": "enroll_store_code",
    "门店": "enroll_store_code",
    "门店编码": "enroll_store_code",
    "门店代码": "enroll_store_code",
    "推荐人": "referrer_member_number",
    "推荐人会员号": "referrer_member_number",
    "状态": "status",
    "会员状态": "status",
    "注册时间": "enrolled_at",
    "入会时间": "enrolled_at",
    "入会日期": "enrolled_at",
    "openid": "wechat_openid",
    "微信openid": "wechat_openid",
    "unionid": "wechat_unionid",
    "微信unionid": "wechat_unionid",
    "支付宝": "alipay_id",
    "支付宝id": "alipay_id",
    "设备id": "device_id",
    "设备号": "device_id",
    "卡号": "card_number",
    "会员卡号": "card_number",
    "平台id": "platform_id",
    "外部id": "external_id",
    "外部编号": "external_id",
}
_CANONICAL = frozenset(MEMBER_FIELDS) | frozenset(IDENTIFIER_COLUMNS)
_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Column:
    """One column of the file: the header as written and the member field it feeds."""

    header: str
    field: str  # "name", "wechat_openid", "custom.shoe_size"

    @property
    def is_pii(self) -> bool:
        return self.field in PII_FIELDS


def _normal(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def map_columns(headers: list[Any]) -> list[Column | None]:
    """Map a header row to member fields; ``None`` for blank headers. Unknown or repeated columns are
    one ``ValidationFailed`` listing all of them, raised before any row is read."""
    columns: list[Column | None] = []
    errors = []
    seen: dict[str, str] = {}
    for raw in headers:
        header = cell_text(raw) or ""
        if not header:
            columns.append(None)
            continue
        key = _normal(header)
        field: str | None = None
        if key.startswith("custom.") or key.startswith("自定义."):
            custom_key = key.split(".", 1)[1]
            if _CUSTOM_KEY.match(custom_key):
                field = "custom." + custom_key
        elif key in _CANONICAL:
            field = key
        else:
            field = ALIASES.get(key)
        if field is None:
            errors.append(field_error(header, f"unknown column '{header}'", "unknown-column"))
            columns.append(None)
            continue
        if field in seen:
            errors.append(
                field_error(
                    header, f"column '{header}' repeats '{seen[field]}' ({field})", "duplicate-column"
                )
            )
        seen[field] = header
        columns.append(Column(header=header, field=field))
    if errors:
        names = ", ".join(e["field"] for e in errors)
        raise ValidationFailed(
            f"The file's header has columns this import does not know or repeats: {names}. "
            "Known columns: " + ", ".join(sorted(_CANONICAL)) + ", custom.<key>.",
            errors=errors,
        )
    if not any(columns):
        raise ValidationFailed(
            "The file has no header row.", errors=[field_error("file", "empty header", "no-header")]
        )
    return columns


def cell_text(value: Any) -> str | None:
    """A cell as trimmed text; ``None`` when empty. Spreadsheet dates become ISO strings and whole
    floats lose their ``.0`` (phone numbers typed into Excel arrive as floats)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        text = value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value).strip()
    return text or None


def detect_format(filename: str, head: bytes = b"") -> str:
    """``csv`` or ``xlsx`` from the file name, else from the first bytes (XLSX is a zip)."""
    suffix = Path(filename).suffix.lower()
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"  # a workbook saved under a .csv name is still a workbook
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in ("", ".dat") and head:
        return "csv"
    raise ValidationFailed(
        "Only CSV and XLSX files can be imported.",
        errors=[field_error("file", f"unsupported file type '{suffix or filename}'", "unsupported-format")],
    )


def _csv_encoding(path: Path) -> str:
    # Excel on Chinese Windows saves "CSV" in GB18030/GBK; everything else we meet is UTF-8.
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        sample = fh.read(256 * 1024)
    try:
        decoder.decode(sample, final=len(sample) < 256 * 1024)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8-sig"


@dataclass
class RowSource:
    """An open import file: its columns, an estimate of its data rows, and the rows themselves as
    ``(row_number, cells)`` where row 1 is the header (as a spreadsheet shows it)."""

    columns: list[Column | None]
    estimated_rows: int | None
    rows: Iterator[tuple[int, list[str | None]]]


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[int, list[str | None]]]:
    with path.open(encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, dialect=_dialect(path, encoding))
        next(reader, None)
        for index, record in enumerate(reader, start=2):
            yield index, [cell.strip() or None for cell in record]


def _dialect(path: Path, encoding: str) -> type[csv.Dialect]:
    with path.open(encoding=encoding, newline="") as fh:
        first = fh.readline()
    if "\t" in first and "," not in first:
        return csv.excel_tab
    return csv.excel


@contextmanager
def open_rows(path: Path, fmt: str) -> Iterator[RowSource]:
    """Open ``path`` for streaming; the header is mapped (and refused if unknown) on entry."""
    if fmt == "csv":
        encoding = _csv_encoding(path)
        try:
            with path.open(encoding=encoding, newline="") as fh:
                reader = csv.reader(fh, dialect=_dialect(path, encoding))
                header = next(reader, None) or []
                # One cheap pass for the progress total; records, not lines, so quoted newlines count once.
                estimated = sum(1 for _ in reader)
        except UnicodeDecodeError as exc:
            raise _undecodable(exc)
        columns = map_columns(list(header))
        yield RowSource(columns=columns, estimated_rows=estimated, rows=_csv_rows(path, encoding))
        return
    if fmt == "xlsx":
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises zipfile/KeyError/... for files that are not XLSX
            raise ValidationFailed(
                "The file is not a readable XLSX workbook.",
                errors=[field_error("file", str(exc) or type(exc).__name__, "unreadable-file")],
            )
        try:
            sheet = workbook.worksheets[0]
            values = sheet.iter_rows(values_only=True)
            header = list(next(values, None) or [])
            columns = map_columns(header)
            max_row = sheet.max_row
            sheet_rows = max_row - 1 if isinstance(max_row, int) and max_row > 0 else None

            def rows() -> Iterator[tuple[int, list[str | None]]]:
                for index, record in enumerate(values, start=2):
                    yield index, [cell_text(v) for v in record]

            yield RowSource(columns=columns, estimated_rows=sheet_rows, rows=rows())
        finally:
            workbook.close()
        return
    raise ValidationFailed(
        "Unknown format.", errors=[field_error("format", "csv or xlsx", "unsupported-format")]
    )


def _undecodable(exc: UnicodeDecodeError) -> ValidationFailed:
    return ValidationFailed(
        "The CSV file is neither UTF-8 nor GB18030 text.",
        errors=[field_error("file", str(exc), "bad-encoding")],
    )
