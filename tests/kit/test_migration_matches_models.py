"""The migrations build exactly the schema the models declare: after ``upgrade`` to head, Alembic's
autogenerate finds nothing to add, drop or change (a model changed without regenerating the
migration, or a migration edited by hand, fails here)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import huiyuan.models  # noqa: F401  (registers every model on the metadata)
from huiyuan.kit.db import Base
from huiyuan.kit.migrate import upgrade


def test_upgraded_schema_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
