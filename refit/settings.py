"""All configuration, read once from the environment (prefix REFIT_) and `.env`.

Every field here is listed in the README's settings table and in `.env.example`.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789"
DEV_ADMIN_PASSWORD = "admin"
DEV_WEBHOOK_TOKEN = "dev-shippo-webhook-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REFIT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- runtime -------------------------------------------------------------------------
    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    # `refit api` processes sharing the port (uvicorn's supervisor restarts one that dies).
    api_workers: int = Field(default=1, ge=1)
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path(".refit")
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    sentry_dsn: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    # The largest request body accepted (413 beyond): JSON bodies here are a few KB.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # --- PostgreSQL and Redis (unset: the embedded servers under data_dir) ---------------
    database_url: str | None = None
    # Kept open per process. Connections past it (the overflow) are closed when returned, so
    # a pool smaller than a process's usual concurrency opens and closes one per few requests.
    db_pool_size: int = 20
    db_max_overflow: int = 10
    # Server-side prepared statements (psycopg prepares a query it has run a few times on a
    # connection). A transaction pooler (PgBouncer in transaction mode, Supabase's port 6543)
    # hands each transaction another server connection, where the statement does not exist.
    db_prepared_statements: bool = True
    redis_url: str | None = None
    redis_key_prefix: str = "refit:"

    # --- job queue -----------------------------------------------------------------------
    worker_concurrency: int = 4
    worker_heartbeat_seconds: float = 5.0
    # A worker whose heartbeat is older than this is presumed dead; its jobs run again.
    worker_stalled_after_seconds: float = 30.0

    # --- auth ----------------------------------------------------------------------------
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"
    access_token_ttl_seconds: int = 900
    siws_statement: str = "Sign in to ReFit to sell your device."
    siws_chain_id: str = "mainnet"
    siws_nonce_ttl_seconds: int = 600
    siws_clock_skew_seconds: int = 600
    email_token_ttl_seconds: int = 86_400
    email_resend_interval_seconds: int = 60
    # Sign-in abuse limits, in `limits` notation ("10/minute"), counted in Redis per client IP
    # and per wallet (refit/ratelimit.py).
    rate_limit_nonce_per_ip: str = "30/minute"
    rate_limit_nonce_per_wallet: str = "10/minute"
    rate_limit_connect_wallet_per_ip: str = "60/minute"
    admin_password: str = DEV_ADMIN_PASSWORD

    # --- mail ----------------------------------------------------------------------------
    smtp_url: str | None = None  # smtp://user:pass@host:port, smtps:// for implicit TLS
    mail_from: str = "ReFit <no-reply@refit.local>"

    # --- pricing -------------------------------------------------------------------------
    quote_ttl_days: int = 14
    price_feed: Literal["fixed", "coingecko", "pyth"] = "fixed"
    # A second feed that must agree with price_feed (within price_max_divergence_pct) before
    # a quote is priced; unset: price_feed alone (refit/pricing/service.py).
    price_feed_secondary: Literal["coingecko", "pyth"] | None = None
    sol_usd_fixed_rate: Decimal = Decimal("150.00")
    coingecko_url: str = "https://api.coingecko.com/api/v3"
    coingecko_api_key: str | None = None
    pyth_hermes_url: str = "https://hermes.pyth.network"
    pyth_api_key: str | None = None
    price_max_age_seconds: int = 60
    price_cache_seconds: int = 20
    price_max_divergence_pct: Decimal = Decimal("2.0")

    # --- orders --------------------------------------------------------------------------
    order_unshipped_expiry_days: int = 30
    offer_response_days: int = 14

    # --- shipping ------------------------------------------------------------------------
    shippo_api_key: str | None = None
    shippo_base_url: str = "https://api.goshippo.com"
    shippo_api_version: str = "2018-02-08"
    shippo_timeout_seconds: float = 20.0
    # How long, in all, a seller's request may wait on the carrier (validation and rates, a
    # rate-limit wait included) before it answers 503; jobs are not bound by it.
    carrier_request_timeout_seconds: float = Field(default=10.0, gt=0)
    shippo_webhook_token: str = DEV_WEBHOOK_TOKEN
    shippo_webhook_hmac_secret: str | None = None
    label_file_type: str = "PDF_4x6"
    label_storage_dir: Path | None = None  # default: data_dir/labels
    label_s3_bucket: str | None = None
    label_s3_endpoint_url: str | None = None
    label_s3_region: str | None = None
    label_s3_access_key_id: str | None = None
    label_s3_secret_access_key: str | None = None
    warehouse_name: str = "ReFit Receiving"
    warehouse_company: str = "ReFit"
    warehouse_street1: str = "215 Clayton St"
    warehouse_street2: str | None = None
    warehouse_city: str = "San Francisco"
    warehouse_state: str = "CA"
    warehouse_zip: str = "94117"
    warehouse_country: str = "US"
    warehouse_phone: str = "+1 555 341 9393"
    warehouse_email: str = "receiving@refit.local"

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
            problems.append("REFIT_JWT_SECRET must be set to a random value of 32+ characters")
        if self.admin_password == DEV_ADMIN_PASSWORD or len(self.admin_password) < 16:
            problems.append("REFIT_ADMIN_PASSWORD must be set, 16+ characters")
        if self.shippo_webhook_token == DEV_WEBHOOK_TOKEN:
            problems.append("REFIT_SHIPPO_WEBHOOK_TOKEN must be set")
        if not self.database_url:
            problems.append("REFIT_DATABASE_URL must be set (no embedded PostgreSQL in production)")
        if not self.redis_url:
            problems.append("REFIT_REDIS_URL must be set (no embedded Redis in production)")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def labels_dir(self) -> Path:
        return self.label_storage_dir or self.data_dir / "labels"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


@lru_cache
def get_settings() -> Settings:
    return Settings()
