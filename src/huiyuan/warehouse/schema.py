"""The warehouse's star schema in DuckDB: facts (orders, order items, points entries, coupon
redemptions, events) around dimensions (member, store, product, date) and the identity map.

Every timestamp is UTC ``TIMESTAMP``; money is ``DECIMAL(18,2)``; ``date_key`` is the business day
``YYYYMMDD`` in the brand's time zone. ``docs/warehouse.md`` describes each table's grain and keys.
"""

from __future__ import annotations

TABLES: dict[str, str] = {
    "dim_store": """
        brand_id BIGINT NOT NULL, store_id BIGINT PRIMARY KEY, code VARCHAR, name VARCHAR,
        city VARCHAR, province VARCHAR, kind VARCHAR, status VARCHAR, updated_at TIMESTAMP""",
    "dim_product": """
        brand_id BIGINT NOT NULL, product_id BIGINT PRIMARY KEY, sku VARCHAR, name VARCHAR,
        category VARCHAR, category_path VARCHAR, brand_name VARCHAR, list_price DECIMAL(18,2),
        status VARCHAR, updated_at TIMESTAMP""",
    "dim_member": """
        brand_id BIGINT NOT NULL, member_id BIGINT PRIMARY KEY, member_number VARCHAR, oneid VARCHAR,
        status VARCHAR, enroll_channel VARCHAR, enroll_store_id BIGINT, enrolled_at TIMESTAMP,
        enrolled_date_key INTEGER, city VARCHAR, province VARCHAR, gender VARCHAR, birth_year INTEGER,
        updated_at TIMESTAMP""",
    "identity_map": """
        brand_id BIGINT NOT NULL, node_id BIGINT PRIMARY KEY, identifier_type VARCHAR NOT NULL,
        identifier_bidx VARCHAR NOT NULL, oneid VARCHAR NOT NULL, updated_at TIMESTAMP""",
    "fact_orders": """
        brand_id BIGINT NOT NULL, order_id BIGINT PRIMARY KEY, order_number VARCHAR, member_id BIGINT,
        person_key VARCHAR, store_id BIGINT, channel VARCHAR, status VARCHAR, paid_at TIMESTAMP,
        created_at TIMESTAMP, amount DECIMAL(18,2), list_amount DECIMAL(18,2), discount DECIMAL(18,2),
        refunded DECIMAL(18,2), units INTEGER, date_key INTEGER, updated_at TIMESTAMP""",
    "fact_order_items": """
        brand_id BIGINT NOT NULL, item_id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, line_no INTEGER,
        product_id BIGINT, sku VARCHAR, category_id BIGINT, quantity INTEGER, amount DECIMAL(18,2),
        paid_amount DECIMAL(18,2), discount DECIMAL(18,2), refunded_quantity INTEGER,
        refunded DECIMAL(18,2)""",
    "fact_points": """
        brand_id BIGINT NOT NULL, entry_id BIGINT PRIMARY KEY, member_id BIGINT, point_type VARCHAR,
        kind VARCHAR, amount BIGINT, source_type VARCHAR, store_id BIGINT, ts TIMESTAMP, date_key INTEGER""",
    "fact_coupon_redemptions": """
        brand_id BIGINT NOT NULL, lock_id BIGINT PRIMARY KEY, member_id BIGINT, order_ref VARCHAR,
        store_id BIGINT, channel VARCHAR, state VARCHAR, coupons INTEGER, discount DECIMAL(18,2),
        order_amount DECIMAL(18,2), redeemed_at TIMESTAMP, date_key INTEGER, updated_at TIMESTAMP""",
    "fact_events": """
        brand_id BIGINT NOT NULL, event_id BIGINT PRIMARY KEY, person_key VARCHAR NOT NULL, oneid VARCHAR,
        member_id BIGINT, user_id VARCHAR, anonymous_id VARCHAR, type VARCHAR, event VARCHAR,
        ts TIMESTAMP, received_at TIMESTAMP, source_id BIGINT, date_key INTEGER, properties JSON,
        context JSON""",
    "dim_date": """
        date_key INTEGER PRIMARY KEY, date DATE, year INTEGER, quarter INTEGER, month INTEGER,
        week INTEGER, weekday INTEGER, is_weekend BOOLEAN""",
    "_sync_state": """
        table_name VARCHAR PRIMARY KEY, cursor_ts TIMESTAMP, cursor_id BIGINT, rows BIGINT,
        synced_at TIMESTAMP""",
}


def create_all(con: object) -> None:
    """Create every table that does not exist yet (``con``: a duckdb connection)."""
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")  # type: ignore[attr-defined]
