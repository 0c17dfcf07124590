"""The one place where configuration is read (environment variables ``HUIYUAN_*`` and ``.env``).

Nothing else in the package reads the environment; everything asks ``get_settings()``.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUIYUAN_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./huiyuan.db"
    # Secret material. The defaults are for the embedded demo only; production refuses them.
    secret_key: str = "dev-insecure-secret-change-me"
    # Comma-separated Fernet keys (newest first) for PII at rest; derived from secret_key when empty.
    pii_keys: str = ""
    # Key for the blind index (keyed hash) used for exact lookup of encrypted identifiers.
    blind_index_key: str = ""

    host: str = "127.0.0.1"
    port: int = 8000
    # Processes of ``huiyuan serve`` (uvicorn workers); ``--workers`` overrides it.
    serve_workers: int = Field(default=1, ge=1)
    log_level: str = "INFO"
    log_json: bool = False

    # Background jobs: "sqlite" (embedded, a file beside the database), "redis", or "memory" (tests).
    jobs_backend: Literal["sqlite", "redis", "memory"] = "sqlite"
    jobs_sqlite_path: str = "./huiyuan-jobs.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    run_worker_in_process: bool = True
    outbox_poll_seconds: float = 1.0
    # How often the worker looks for scheduled runs that are due (expiry, tier review …).
    schedule_poll_seconds: float = 60.0
    run_schedules: bool = True
    # Huey queue name (Redis key prefix); threads of the embedded consumer.
    jobs_queue_name: str = "huiyuan"
    jobs_workers: int = 2
    # A failing outbox handler is retried with exponential backoff up to this delay.
    outbox_retry_cap_seconds: float = 3600.0

    # Limits.
    max_page_size: int = 500
    max_body_bytes: int = 10 * 1024 * 1024
    # Where uploaded files (imports) and generated reports are kept.
    data_dir: str = "./var"
    # The analytics warehouse (DuckDB file) that ``warehouse.sync`` fills from this database.
    warehouse_path: str = "./huiyuan-warehouse.duckdb"
    api_rate_limit: str = "600/minute"
    login_rate_limit: str = "10/minute"
    rate_limit_storage: str = "memory://"

    idempotency_ttl_hours: int = 24
    session_max_age_seconds: int = 12 * 3600
    member_token_ttl_seconds: int = 900
    member_qr_ttl_seconds: int = 300
    session_cookie_secure: bool = False

    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 8
    # Retry delays: base * 2^(attempt-1) with jitter, never more than the cap.
    webhook_retry_base_seconds: float = 30.0
    webhook_retry_cap_seconds: float = 6 * 3600.0
    webhook_signature_tolerance_seconds: int = 300

    default_timezone: str = "Asia/Shanghai"
    console_assets_dir: str = Field(
        default="",
        description="node_modules folder holding the console's vendor assets (htmx.org, echarts); "
        "empty: <project root>/node_modules, then ./node_modules",
    )

    # Test harness.
    test_pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, v: str) -> str:
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://") :]
        return v

    def fernet_keys(self) -> list[bytes]:
        if self.pii_keys.strip():
            return [k.strip().encode() for k in self.pii_keys.split(",") if k.strip()]
        return [base64.urlsafe_b64encode(hashlib.sha256(b"pii:" + self.secret_key.encode()).digest())]

    def blind_key(self) -> bytes:
        if self.blind_index_key:
            return self.blind_index_key.encode()
        return hashlib.sha256(b"blind:" + self.secret_key.encode()).digest()

    @property
    def project_root(self) -> Path:
        return Path(__file__).resolve().parents[2]


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
