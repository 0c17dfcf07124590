"""Reports as files for finance: titled tables written as CSV (UTF-8 with a BOM, so Excel reads it)
or as an Excel workbook (one sheet per table). Used by every settlement export."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from fastapi import Response
from openpyxl import Workbook
from openpyxl.utils import get_column_letter

# A titled table: (title, header row, rows).
Section = tuple[str, Sequence[str], Sequence[Sequence[Any]]]


def _text(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def to_csv(sections: Sequence[Section]) -> str:
    """A BOM, then one block per table — a title row, the header row, the lines — with an empty row
    between blocks. Money has two places."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for i, (title, headers, rows) in enumerate(sections):
        if i:
            writer.writerow([])
        writer.writerow([title])
        writer.writerow(headers)
        for row in rows:
            writer.writerow([_text(v) for v in row])
    return "\ufeff" + buffer.getvalue()


def to_xlsx(sections: Sequence[Section]) -> bytes:
    """One sheet per table, header row frozen, integers as integers and money as numbers
    formatted ``0.00``."""
    workbook = Workbook()
    first = True
    for title, headers, rows in sections:
        # Sheet names may not contain "/" (and are at most 31 characters).
        name = title.replace(" / ", " ").replace("/", " ")[:31]
        sheet = workbook.active if first else workbook.create_sheet()
        assert sheet is not None
        sheet.title = name
        first = False
        sheet.append(list(headers))
        for row in rows:
            sheet.append(list(row))
            for col, value in enumerate(row, start=1):
                if isinstance(value, Decimal):
                    sheet.cell(row=sheet.max_row, column=col).number_format = "0.00"
        for col, header in enumerate(headers, start=1):
            sheet.column_dimensions[get_column_letter(col)].width = max(12, min(40, len(header) + 4))
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def download(sections: Sequence[Section], name: str, format: str) -> Response:
    """The tables as a file download: ``format`` ``csv`` or ``xlsx``, named ``name.<format>``."""
    if format == "csv":
        body: str | bytes = to_csv(sections)
        media_type = "text/csv; charset=utf-8"
    else:
        body, media_type = to_xlsx(sections), XLSX_MEDIA_TYPE
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )
