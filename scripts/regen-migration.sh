#!/usr/bin/env bash
# Regenerates the initial migration from the models. Used only while nothing has been released;
# after the first release every schema change gets a migration of its own (`alembic revision`).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f src/huiyuan/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp/empty.db" <<'PY'
import sys
from alembic import command
from huiyuan.kit.migrate import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
f=src/huiyuan/migrations/versions/0001_initial_schema.py
sed -i 's/astext_type=Text()/astext_type=sa.Text()/g' "$f"
.venv/bin/ruff format -q src/huiyuan/migrations/versions/0001_initial_schema.py
.venv/bin/ruff check -q --fix src/huiyuan/migrations/versions/0001_initial_schema.py || true
rm -rf "$tmp"
echo "wrote src/huiyuan/migrations/versions/0001_initial_schema.py"
