"""Import of platform ID mappings (CSV): each row says two identifiers are one person, e.g. a
Tmall buyer id and a phone, or an OpenID and a UnionID from the WeChat open platform.

Header (UTF-8, BOM allowed): ``left_type,left_value,right_type,right_value`` and optionally
``confidence`` and ``rule``. Rows go through real-time linking (limits and conflicts apply) in
chunks of ``CHUNK`` rows, one transaction each; the job checkpoints the row reached, so a resumed
run continues after the last committed chunk. The file is kept under ``data_dir/oneid-imports``
until the run has linked every row, then deleted (it holds identifier values in clear).
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from huiyuan.identity import config
from huiyuan.identity.ingest import IngestStats
from huiyuan.identity.linking import Ident
from huiyuan.jobs.service import enqueue
from huiyuan.kit.db import Database
from huiyuan.kit.errors import PayloadTooLarge, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.settings import get_settings

JOB_KIND = "identity.import_mappings"
REQUIRED = ("left_type", "left_value", "right_type", "right_value")
CHUNK = 1_000
MAX_ERRORS_KEPT = 50


def save_upload(stream: IO[bytes]) -> Path:
    """Keep the uploaded CSV under ``data_dir/oneid-imports`` (bounded by ``max_body_bytes``)."""
    settings = get_settings()
    folder = Path(settings.data_dir).resolve() / "oneid-imports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.csv"
    written = 0
    with path.open("wb") as out:
        while chunk := stream.read(1024 * 1024):
            written += len(chunk)
            if written > settings.max_body_bytes:
                out.close()
                path.unlink(missing_ok=True)
                raise PayloadTooLarge(f"Mapping files are limited to {settings.max_body_bytes} bytes.")
            out.write(chunk)
    return path


@contextmanager
def _reader(path: Path) -> Iterator[csv.DictReader[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield csv.DictReader(handle)


def check_header(path: Path) -> None:
    with _reader(path) as reader:
        header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        path.unlink(missing_ok=True)
        raise ValidationFailed(
            "The mapping file needs the columns " + ", ".join(REQUIRED) + ".",
            errors=[field_error("file", f"missing column '{c}'", "missing-column") for c in missing],
        )


def submit(session: Session, *, actor: Principal, stream: IO[bytes], filename: str) -> Any:
    """Accept a mapping CSV and queue its import (started when the request commits)."""
    actor.scope.require_brand()
    path = save_upload(stream)
    check_header(path)
    return enqueue(
        session, actor=actor, kind=JOB_KIND, params={"path": str(path), "filename": filename[:200]}
    )


def _rows(path: Path, skip: int) -> Iterator[tuple[int, dict[str, str]]]:
    with _reader(path) as reader:
        for number, row in enumerate(reader, start=1):
            if number > skip:
                yield number, {(k or "").strip(): (v or "").strip() for k, v in row.items()}


def count_rows(path: Path) -> int:
    with _reader(path) as reader:
        return sum(1 for _ in reader)


def run(
    db: Database,
    *,
    actor: Principal,
    path: Path,
    state: dict[str, Any],
    checkpoint: Callable[[dict[str, Any], Session], None],
    progress: Callable[[int, int | None, str | None], None],
) -> dict[str, Any]:
    """Link every row of the file, chunk by chunk; resumes after ``state["row"]``."""
    brand_id = actor.scope.require_brand()
    total = count_rows(path)
    done = int(state.get("row", 0))
    totals = dict(state.get("totals") or {})
    errors: list[dict[str, Any]] = list(state.get("errors") or [])
    rows = _rows(path, done)
    while True:
        chunk = [row for _, (_, row) in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            break
        stats = IngestStats()
        with db.unit_of_work(actor.scope) as session:
            writer = config.writer(session, brand_id, actor.label)
            for offset, row in enumerate(chunk, start=done + 1):
                problem = _link_row(writer, row, stats)
                if problem is not None and len(errors) < MAX_ERRORS_KEPT:
                    errors.append({"row": offset, "error": problem})
            done += len(chunk)
            for key, value in stats.as_dict().items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
            checkpoint({"row": done, "totals": totals, "errors": errors}, session)
        progress(done, total, f"{done} of {total} mappings")
    path.unlink(missing_ok=True)  # the file holds identifier values in clear: gone once linked
    return {"rows": done, **totals, "errors": errors}


def _link_row(writer: Any, row: dict[str, str], stats: IngestStats) -> str | None:
    missing = [c for c in REQUIRED if not row.get(c)]
    if missing:
        stats.refused_values += 1
        return "missing " + ", ".join(missing)
    try:
        confidence = float(row.get("confidence") or 1.0)
    except ValueError:
        return "confidence is not a number"
    if not 0 < confidence <= 1:
        return "confidence must be in (0, 1]"
    result = writer.link(
        Ident(row["left_type"], row["left_value"]),
        Ident(row["right_type"], row["right_value"]),
        source="mapping",
        rule=(row.get("rule") or "mapping.csv")[:60],
        confidence=confidence,
    )
    stats.add(result)
    if result.status == "junk":
        return f"refused value ({result.reason})"
    return None
