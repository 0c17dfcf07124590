"""The warehouse's star schema in DuckDB: facts (orders, order lines, points entries, coupon
redemptions, events) around dimensions (member, store, product, date) and the identity map, plus
the sync's own bookkeeping (``_sync_state``, ``_sync_runs``, ``_warehouse_meta``).

Every timestamp is UTC ``TIMESTAMP``; money is ``DECIMAL(18,2)``; ``date_key`` is the business day
``YYYYMMDD`` in the brand's time zone. ``docs/warehouse.md`` describes each table's grain and keys.
The column names are a contract with the analyses: add columns, never rename or drop one. A change
of this file bumps ``SCHEMA_VERSION``; a sync that finds a file of another version rebuilds it.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 2

TABLES: dict[str, str] = {
    "dim_store": """
        brand_id BIGINT NOT NULL, store_id BIGINT PRIMARY KEY, code VARCHAR, name VARCHAR,
        city VARCHAR, region VARCHAR, channel VARCHAR, province VARCHAR, kind VARCHAR, status VARCHAR,
        updated_at TIMESTAMP""",
    "dim_product": """
        brand_id BIGINT NOT NULL, product_id BIGINT PRIMARY KEY, sku VARCHAR, name VARCHAR,
        category VARCHAR, category_path VARCHAR, brand_name VARCHAR, list_price DECIMAL(18,2),
        status VARCHAR, updated_at TIMESTAMP""",
    "dim_member": """
        brand_id BIGINT NOT NULL, member_id BIGINT PRIMARY KEY, member_number VARCHAR, oneid VARCHAR,
        tier VARCHAR, tier_rank INTEGER, status VARCHAR, enroll_channel VARCHAR, enroll_store_id BIGINT,
        enrolled_at TIMESTAMP, enrolled_date_key INTEGER, city VARCHAR, province VARCHAR, gender VARCHAR,
        birth_year INTEGER, member_number_bidx VARCHAR, updated_at TIMESTAMP""",
    "identity_map": """
        brand_id BIGINT NOT NULL, node_id BIGINT PRIMARY KEY, identifier_type VARCHAR NOT NULL,
        identifier_value VARCHAR NOT NULL, identifier_bidx VARCHAR NOT NULL, oneid VARCHAR NOT NULL,
        updated_at TIMESTAMP""",
    "fact_orders": """
        brand_id BIGINT NOT NULL, order_id BIGINT PRIMARY KEY, order_number VARCHAR, member_id BIGINT,
        person_key VARCHAR, store_id BIGINT, channel VARCHAR, status VARCHAR, paid_at TIMESTAMP,
        created_at TIMESTAMP, amount DECIMAL(18,2), list_amount DECIMAL(18,2), discount DECIMAL(18,2),
        refunded DECIMAL(18,2), units INTEGER, date_key INTEGER, updated_at TIMESTAMP""",
    "fact_order_items": """
        brand_id BIGINT NOT NULL, item_id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, line_no INTEGER,
        product_id BIGINT, sku VARCHAR, brand_name VARCHAR, category VARCHAR, category_id BIGINT,
        quantity INTEGER, amount DECIMAL(18,2), discount DECIMAL(18,2), list_amount DECIMAL(18,2),
        deal_amount DECIMAL(18,2), paid_amount DECIMAL(18,2), refunded_quantity INTEGER,
        refunded DECIMAL(18,2)""",
    "fact_points": """
        brand_id BIGINT NOT NULL, entry_id BIGINT PRIMARY KEY, member_id BIGINT, point_type VARCHAR,
        kind VARCHAR, amount BIGINT, ts TIMESTAMP, funder VARCHAR, source_type VARCHAR, store_id BIGINT,
        date_key INTEGER""",
    "fact_coupon_redemptions": """
        brand_id BIGINT NOT NULL, lock_id BIGINT NOT NULL, coupon_id BIGINT NOT NULL, template_id BIGINT,
        member_id BIGINT, order_ref VARCHAR, store_id BIGINT, channel VARCHAR, state VARCHAR,
        coupon_kind VARCHAR, discount DECIMAL(18,2), redeemed_at TIMESTAMP, date_key INTEGER,
        updated_at TIMESTAMP, PRIMARY KEY (lock_id, coupon_id)""",
    "fact_events": """
        brand_id BIGINT NOT NULL, event_id BIGINT PRIMARY KEY, person_key VARCHAR NOT NULL, oneid VARCHAR,
        member_id BIGINT, anonymous_id VARCHAR, type VARCHAR, event VARCHAR, name VARCHAR, ts TIMESTAMP,
        received_at TIMESTAMP, source_id BIGINT, date_key INTEGER, properties JSON, context JSON""",
    "dim_date": """
        date_key INTEGER PRIMARY KEY, date DATE, year INTEGER, quarter INTEGER, month INTEGER,
        week INTEGER, weekday INTEGER, is_weekend BOOLEAN""",
    "_sync_state": """
        table_name VARCHAR PRIMARY KEY, cursor VARCHAR, rows BIGINT, synced_at TIMESTAMP,
        cursor_ts TIMESTAMP, cursor_id BIGINT""",
    "_sync_runs": """
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, rows BIGINT, full_rebuild BOOLEAN""",
    "_warehouse_meta": "key VARCHAR PRIMARY KEY, value VARCHAR",
}

# What ``freshness`` lists: every table analyses read.
DATA_TABLES: tuple[str, ...] = tuple(t for t in TABLES if not t.startswith("_"))


def create_all(con: Any) -> None:
    """Create every table that does not exist yet and stamp a new file with the schema version
    (``con``: a duckdb connection)."""
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    con.execute("INSERT OR IGNORE INTO _warehouse_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def version_of(con: Any) -> int | None:
    """The schema version the file was built with (None: empty file, or built before versions)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "_warehouse_meta" not in tables:
        return 0 if tables else None
    row = con.execute("SELECT value FROM _warehouse_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0
