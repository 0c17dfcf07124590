"""Reading a file of a mall gift's third-party codes (``mall.import_codes`` adds them): CSV, the first
column, an optional header (``code``, ``codes``, ``券码``, ``兑换码``), codes of 1–200 printable
characters without spaces. Pure: no database.

The coupon templates read their code files with other rules (``coupons.codes.parse_import``: 4–64
visible ASCII characters or a format); the two are kept apart until the owners decide on one.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.points.mall_schemas import CodeImportError

MAX_CODES_PER_IMPORT = 100_000
MAX_REPORTED_ERRORS = 100
CODE_HEADERS = {"code", "codes", "券码", "兑换码"}


@dataclass
class CodeFile:
    """The distinct valid codes of a file in file order, how many lines repeated one, how many were
    invalid, and the first ``MAX_REPORTED_ERRORS`` refusals with their line numbers."""

    codes: list[str] = field(default_factory=list)
    repeats: int = 0
    invalid: int = 0
    errors: list[CodeImportError] = field(default_factory=list)


def valid_code(code: str) -> bool:
    return 1 <= len(code) <= 200 and all(c.isprintable() and not c.isspace() for c in code)


def read_code_file(content: bytes | None) -> CodeFile:
    """The codes of an uploaded file; ``ValidationFailed`` for no file, text that is not UTF-8, or more
    than ``MAX_CODES_PER_IMPORT`` distinct codes."""
    if not content:
        raise ValidationFailed(
            "Upload a CSV file of codes.", errors=[field_error("file", "required", "required")]
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "The file is not UTF-8 text.", errors=[field_error("file", "not UTF-8", "encoding")]
        )
    out = CodeFile()
    seen: set[str] = set()
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        value = row[0].strip() if row else ""
        if not value and not any(cell.strip() for cell in row):
            continue
        if line == 1 and value.lower() in CODE_HEADERS:
            continue
        if not valid_code(value):
            out.invalid += 1
            if len(out.errors) < MAX_REPORTED_ERRORS:
                out.errors.append(
                    CodeImportError(line=line, message="a code has 1–200 visible characters, no spaces")
                )
            continue
        if value in seen:
            out.repeats += 1
            continue
        seen.add(value)
        out.codes.append(value)
        if len(seen) > MAX_CODES_PER_IMPORT:
            raise ValidationFailed(
                f"At most {MAX_CODES_PER_IMPORT} codes per file.",
                errors=[field_error("file", f"more than {MAX_CODES_PER_IMPORT} codes", "too-many")],
            )
    return out
