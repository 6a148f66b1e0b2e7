"""All configuration, read once from the environment (prefix REFIT_) and `.env`.

Every field here is listed in the README's settings table and in `.env.example`.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import parse as parse_limit
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789"  # noqa: S105 (development-only default; production refuses it)
DEV_ADMIN_PASSWORD = "admin"  # noqa: S105 (development-only default; production refuses it)
DEV_WEBHOOK_TOKEN = "dev-shippo-webhook-token"  # noqa: S105 (development-only default; production refuses it)


def estimated_bits(secret: str) -> float:
    """A secret's entropy as its characters' Shannon entropy times its length: what a guesser
    who knows the character mix faces. Random secrets score near their true strength; a
    word, a repeated pattern or a long run of one character scores far below it."""
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return max(0.0, per_char * len(secret))


def _weak_secret(
    name: str, value: str, default: str | None, *, min_chars: int, min_bits: int
) -> list[str]:
    # Long and random: whoever guesses the JWT secret signs in as any seller; whoever guesses
    # the webhook token moves any order as if the carrier had scanned it.
    advice = "generate one with `openssl rand -hex 32`"
    if value == default:
        return [f"{name} must be set: the development default is public ({advice})"]
    if len(value) < min_chars:
        return [f"{name} is too short: {len(value)} characters, {min_chars}+ needed ({advice})"]
    bits = estimated_bits(value)
    if bits < min_bits:
        return [
            f"{name} is too predictable: about {bits:.0f} bits of entropy, {min_bits}+ needed "
            f"(repeated or few distinct characters; {advice})"
        ]
    return []


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
    # Traces go over OTLP/HTTP to this collector or APM agent (http://host:4318); unset, no
    # tracing is installed. OpenTelemetry's own variable name is read too (refit/tracing.py).
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "REFIT_OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    cors_origins: list[str] = Field(default_factory=list)
    # The largest request body accepted (413 beyond): JSON bodies here are a few KB.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # --- PostgreSQL and Redis (unset: the embedded servers under data_dir) ---------------
    database_url: str | None = None
    # A direct (session) connection for LISTEN, when database_url goes through a transaction
    # pooler, where LISTEN does not work (Supabase: port 5432 rather than the pooler's 6543).
    database_direct_url: str | None = None
    # Kept open per process. Connections past it (the overflow) are closed when returned, so
    # a pool smaller than a process's usual concurrency opens and closes one per few requests.
    db_pool_size: int = 20
    db_max_overflow: int = 10
    # An API process's connections for the hot path (refit.hot_path: the sellers' order and
    # list, the webhook intake), opened on first use beside the pool above: requests beyond it
    # wait for one (a webhook for its batch to go out) up to db_seller_read_wait_seconds: 503.
    db_seller_read_pool_size: int = Field(default=10, ge=1)
    db_seller_read_wait_seconds: float = Field(default=10.0, gt=0)
    # Server-side prepared statements (psycopg prepares a query it has run a few times on a
    # connection). A transaction pooler (PgBouncer in transaction mode, Supabase's port 6543)
    # hands each transaction another server connection, where the statement does not exist.
    db_prepared_statements: bool = True
    # A PostgreSQL that stops answering without closing connections (a host gone, a hung
    # pooler, a partition) must cost a bounded wait, never a hung request (refit/db.py):
    # opening a connection gives up after this (libpq's minimum is 2) ...
    db_connect_timeout_seconds: int = Field(default=5, ge=2)
    # ... an idle connection is probed after this much quiet, every interval, and dropped
    # after `count` unanswered probes; data unacknowledged for as long drops it too.
    db_keepalives_idle_seconds: int = Field(default=30, ge=1)
    db_keepalives_interval_seconds: int = Field(default=10, ge=1)
    db_keepalives_count: int = Field(default=3, ge=1)
    # ... and a statement is cancelled by the server after this (a 503 in a request), its
    # answer awaited 2 s more before the connection is given up: every transaction of the
    # API's (and the worker's) engine but a job's. Jobs, commands and migrations have none:
    # see refit/db.py. 0 leaves the server's own setting, and no wait of ours.
    db_statement_timeout_ms: int = Field(default=5_000, ge=0)
    redis_url: str | None = None
    redis_key_prefix: str = "refit:"
    # The process's Redis connections; a command holds one for its round trip. Unset: one
    # per request or job the process works on at once (db_pool_size + db_max_overflow +
    # worker_concurrency) and two more (the revocation watch's subscription holds one for
    # good). Commands beyond it wait for one to come free, up to redis_pool_timeout_seconds
    # (as long as a command may wait for its answer), then are answered 503: a burst queues,
    # it never skips a rate limit. 200 requests at once on a busy 2-core machine waited
    # over 2 s while the event loop got through them.
    redis_max_connections: int | None = Field(default=None, ge=2)
    redis_pool_timeout_seconds: float = Field(default=5.0, gt=0)

    # --- job queue -----------------------------------------------------------------------
    worker_concurrency: int = 4
    worker_heartbeat_seconds: float = 5.0
    # A worker whose heartbeat is older than this is presumed dead; its jobs run again.
    worker_stalled_after_seconds: float = 30.0
    # The periodic sweeps re-queue a row whose job died at most this many times; the next time
    # they find it stuck they flag it for an operator instead (refit/sweeps.py). 0: flag at once.
    sweep_max_attempts: int = Field(default=5, ge=0)
    # A carrier webhook whose handling raised this many times is given up on: no more retries
    # nor sweeps, its error set for an operator (the dashboard's webhook inbox replays it).
    # With the job's backoff (3 s, 9 s … 36 min) 8 handlings span about an hour.
    webhook_max_attempts: int = Field(default=8, ge=1)

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
    # Per seller (by token), counted across every API process; "" switches one off (the
    # benchmarks). The plan's: 100 requests a minute, 10 label purchases a minute, 50 address
    # validations a day.
    rate_limit_seller_requests: str = "100/minute"
    rate_limit_quotes_per_seller: str = "30/minute"
    rate_limit_orders_per_seller: str = "10/minute"
    rate_limit_label_purchases_per_seller: str = "10/minute"
    rate_limit_address_validations_per_seller: str = "50/day"
    # Verification mails: per client IP, and in all (wallets cost nothing to make, so a
    # per-seller interval alone does not bound what we send).
    rate_limit_verification_mail_per_ip: str = "10/hour"
    rate_limit_verification_mail_overall: str = "500/hour"
    # The proxies (IPs or CIDR networks) whose X-Forwarded-For is believed: the client is
    # the right-most address in it that is not one of them. Empty: the TCP peer is the client
    # and X-Forwarded-For is ignored (refit/ratelimit.py).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The password of the `admin` operator `refit run` creates on the embedded default
    # (development, no REFIT_DATABASE_URL) while there is no operator; used nowhere else.
    admin_password: str = DEV_ADMIN_PASSWORD
    # Operators' access tokens (POST /api/admin/login) last a shift.
    operator_token_ttl_seconds: int = Field(default=28_800, ge=60)
    # Failed operator sign-ins, counted per username and per client IP; over either, even the
    # right password is refused until the window has passed.
    rate_limit_operator_login_per_username: str = "5/15minutes"
    rate_limit_operator_login_per_ip: str = "20/15minutes"

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
    # The largest browser-storage export a seller may upload (POST /api/migrate/localstorage,
    # 413 beyond); one browser's export is a few KB per order.
    localstorage_upload_max_bytes: int = Field(default=2_097_152, ge=1024)
    # Browser-export uploads per seller (`limits` notation; "" switches it off), besides the
    # request and order limits every upload also counts under.
    rate_limit_localstorage_imports_per_seller: str = "5/day"

    # --- inspection ----------------------------------------------------------------------
    # The photos of one evidence upload, in all (413 beyond); the one route allowed a body
    # larger than max_body_bytes.
    evidence_max_bytes: int = Field(default=10_485_760, ge=1024)
    # Lifetime of a signed evidence photo URL (the order's owner and operators get fresh ones
    # with every read of the order).
    evidence_url_ttl_seconds: int = Field(default=900, ge=1)

    # --- realtime (order events over Server-Sent Events) -----------------------------------
    # A comment line this often on an idle stream, so proxies do not close it.
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Lifetime of a stream ticket (?ticket= for browsers' EventSource, which sends no headers).
    stream_ticket_ttl_seconds: int = Field(default=60, ge=1)

    # --- shipping ------------------------------------------------------------------------
    shippo_api_key: str | None = None
    shippo_base_url: str = "https://api.goshippo.com"
    shippo_api_version: str = "2018-02-08"
    shippo_timeout_seconds: float = 20.0
    # How long, in all, a seller's request may wait on the carrier (validation and rates, a
    # rate-limit wait included) before it answers 503; jobs are not bound by it.
    carrier_request_timeout_seconds: float = Field(default=10.0, gt=0)
    shippo_webhook_token: str = DEV_WEBHOOK_TOKEN
    # Production with a Shippo key requires it, unless shippo_webhook_no_hmac says the account
    # has none: Shippo turns HMAC on per account through its sales team, not self-service.
    shippo_webhook_hmac_secret: str | None = None
    shippo_webhook_no_hmac: bool = False
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
    # Labels of devices worth more than this (USD: the quote inbound, the device's value on
    # the way back) are insured for that value; labels home are always insured.
    insure_above_usd: Decimal = Field(default=Decimal("100"), ge=0)
    # Above this value a signature is required on delivery, both ways.
    signature_above_usd: Decimal = Field(default=Decimal("500"), ge=0)

    # --- Solana (payouts) ----------------------------------------------------------------
    # The cluster's JSON-RPC endpoint; unset: the local ledger (refit/ledger/) on
    # ledger_host:ledger_port, which `refit run` starts.
    solana_rpc_url: str | None = None
    # The treasury that pays sellers: a keypair file, or the JSON array of 64 numbers itself
    # (the Solana CLI's format). Unset outside production: one generated under data_dir.
    treasury_keypair: SecretStr | None = None
    # Its public key (base58): all the API and the dashboard know of the treasury; they never
    # open the keypair, which only the worker loads (and refuses to start when it is another
    # key's). Unset outside production: the development keypair's (`refit run` exports it).
    treasury_pubkey: str | None = Field(default=None, pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")
    # A payout above this (USD) waits for a second admin's approval.
    payout_max_usd: Decimal = Field(default=Decimal("2000"), ge=0)
    # What may be signed in one UTC day (USD), across every worker.
    payout_daily_max_usd: Decimal = Field(default=Decimal("20000"), ge=0)
    # OFAC's SDN list (`refit sanctions load`) older than this, by its publish date: an
    # alert, and in production new payouts are held until a newer list is loaded.
    sanctions_max_age_days: int = Field(default=7, ge=1)
    ledger_host: str = "127.0.0.1"
    ledger_port: int = Field(default=8899, ge=0, le=65535)
    # One slot of the local ledger; a blockhash lives 150 of them, as on mainnet.
    ledger_slot_ms: int = Field(default=400, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        # REFIT_TRUSTED_PROXIES=10.0.0.0/8,192.0.2.7 (a JSON list works too).
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"REFIT_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network"
                ) from exc
        return value

    @model_validator(mode="after")
    def _limits_are_readable(self) -> Settings:
        """A mistyped limit is refused at start-up, naming its setting, rather than turning
        every request it guards into a 500. Empty turns a limit off."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.startswith("rate_limit_") and value:
                try:
                    parse_limit(value)
                except ValueError as exc:
                    raise ValueError(
                        f"REFIT_{name.upper()}={value!r} is not a limit like '10/minute'"
                    ) from exc
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = [
            *_weak_secret(
                "REFIT_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET, min_chars=32, min_bits=128
            ),
            *_weak_secret(
                "REFIT_SHIPPO_WEBHOOK_TOKEN",
                self.shippo_webhook_token,
                DEV_WEBHOOK_TOKEN,
                min_chars=24,
                min_bits=96,
            ),
        ]
        if self.shippo_webhook_hmac_secret is not None:
            problems += _weak_secret(
                "REFIT_SHIPPO_WEBHOOK_HMAC_SECRET",
                self.shippo_webhook_hmac_secret,
                None,
                min_chars=24,
                min_bits=96,
            )
        if not self.shippo_api_key:
            problems.append(
                "REFIT_SHIPPO_API_KEY must be set (without it labels come from the built-in "
                "sandbox carrier and no parcel can ship)"
            )
        elif self.shippo_webhook_hmac_secret is None and not self.shippo_webhook_no_hmac:
            # The URL token alone is a secret that travels in every webhook URL (and logs of
            # whatever proxies them); the signature also proves the body is Shippo's.
            problems.append(
                "REFIT_SHIPPO_WEBHOOK_HMAC_SECRET must be set (Shippo's webhooks are then "
                "checked for its signature as well as the URL token); if your Shippo account "
                "has no HMAC (Shippo sets it up on request), say so with "
                "REFIT_SHIPPO_WEBHOOK_NO_HMAC=true"
            )
        if not self.smtp_url:
            problems.append(
                "REFIT_SMTP_URL must be set (without it mails are written to the outbox folder "
                "and no seller receives one)"
            )
        if not self.sentry_dsn:
            problems.append(
                "REFIT_SENTRY_DSN must be set (without it errors in production reach no one)"
            )
        if not self.database_url:
            problems.append("REFIT_DATABASE_URL must be set (no embedded PostgreSQL in production)")
        if not self.redis_url:
            problems.append("REFIT_REDIS_URL must be set (no embedded Redis in production)")
        if not self.solana_rpc_url:
            problems.append("REFIT_SOLANA_RPC_URL must be set (no local ledger in production)")
        if self.treasury_pubkey is None:
            # The keypair is the worker's alone: `refit worker` refuses to start without it.
            problems.append("REFIT_TREASURY_PUBKEY must be set (no generated treasury)")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def solana_rpc_endpoint(self) -> str:
        return self.solana_rpc_url or f"http://{self.ledger_host}:{self.ledger_port}"

    @property
    def labels_dir(self) -> Path:
        return self.label_storage_dir or self.data_dir / "labels"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


@lru_cache
def get_settings() -> Settings:
    return Settings()
