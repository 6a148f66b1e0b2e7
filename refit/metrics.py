"""Prometheus metrics, served at /metrics.

Two kinds of series:
- counted where things happen, in the process that did them: HTTP requests and latencies
  (`logs.RequestMiddleware`), job outcomes by task (`logs.observe_job`), labels bought, payouts
  finalized, webhook lag, rows the sweeps gave up on;
- read from PostgreSQL at each scrape, so any API process answers for the whole system
  (the queue's depth, live workers, open payouts, unprocessed webhooks, the sanctions list's
  age): what the pager's rules (ops/prometheus/alerts.yml) watch, whichever process ran the
  work.

Several processes behind one port: PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode) makes /metrics count them all; `refit api --workers N` sets one, and a
worker sharing the directory (`refit run`) is counted too.
"""

from __future__ import annotations

import asyncio
import math
import os

import structlog
from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text

from refit import resources
from refit.log_setup import describe_error

log = structlog.get_logger(__name__)

HTTP_REQUESTS = Counter("refit_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "refit_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
# outcome: succeeded, retried (failed, another attempt is scheduled), failed (for good),
# aborted.
JOBS = Counter(
    "refit_jobs_total", "Job attempts finished, by task and outcome", ["task", "outcome"]
)
JOB_DURATION = Histogram(
    "refit_job_duration_seconds",
    "Job attempt duration",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
# outcome: bought, skipped (nothing to buy: already stored, the order moved on).
LABEL_PURCHASES = Counter(
    "refit_label_purchases_total", "Label jobs that completed, by outcome", ["outcome"]
)
PAYOUTS_FINALIZED = Counter("refit_payouts_finalized_total", "Payouts finalized on chain")
# A payout recipient found on OFAC's SDN list (refit.sanctions.service.screen).
SANCTIONS_HITS = Counter(
    "refit_sanctions_hits_total", "Payout recipients screened and found on the sanctions list"
)
# A row whose job died and that the sweep re-queued REFIT_SWEEP_MAX_ATTEMPTS times, then
# flagged for an operator instead (refit/sweeps.py), by the job's task.
SWEEP_GAVE_UP = Counter(
    "refit_sweep_gave_up_total",
    "Rows the sweeps stopped re-queueing and flagged for an operator, by task",
    ["task"],
)
WEBHOOK_LAG = Histogram(
    "refit_webhook_lag_seconds",
    "From a carrier webhook's arrival to its processing",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

# The scrape must answer even when PostgreSQL does not: the database series are then left
# out (and refit_database_metrics_up says 0) rather than holding the scraper.
DATABASE_READ_TIMEOUT_SECONDS = 3.0

# The errors a payout is held with, counted here and written by refit/payouts (the core
# imports no domain, so the words live here and payouts imports them).
PAYOUT_HELD_TREASURY_LOW = "treasury balance too low"
PAYOUT_HELD_ALREADY_ON_CHAIN = "a transfer for this order is already on chain"

# What the database-read series are, for the alert rules' test: name -> help.
DATABASE_SERIES = {
    "refit_database_metrics_up": "1 when the series read from PostgreSQL are present",
    "refit_queue_jobs": "Jobs waiting (todo, due or scheduled) or running (doing), by task",
    "refit_queue_oldest_due_job_age_seconds": "How long the oldest due job has waited",
    "refit_workers_alive": "Workers whose heartbeat is recent",
    "refit_payouts": "Payouts by status",
    "refit_payouts_treasury_too_low": "Open payouts held because the treasury is too low",
    "refit_payouts_already_on_chain": (
        "Open payouts held unsigned: a transfer for their order is on chain, not in the table"
    ),
    "refit_webhooks_unprocessed": "Carrier webhooks received and not yet processed",
    "refit_webhooks_oldest_unprocessed_age_seconds": "Age of the oldest unprocessed webhook",
    "refit_sanctions_list_age_seconds": (
        "Age of the sanctions list loaded, from its publish date (+Inf: none loaded)"
    ),
    "refit_sanctions_list_max_age_seconds": "REFIT_SANCTIONS_MAX_AGE_DAYS, in seconds",
    "refit_treasury_balance_lamports": (
        "The treasury's balance, the worker's newest reading (NaN: none yet)"
    ),
    "refit_payouts_daily_average_lamports": (
        "Lamports paid per day over the last 7 days (finalized payouts / 7)"
    ),
}

router = APIRouter(tags=["operations"])


def count_label_job(outcome: str) -> None:
    """One completed label job: bought, or skipped (the job's outcome is free text)."""
    LABEL_PURCHASES.labels("bought" if outcome.startswith("label bought") else "skipped").inc()


async def _database_series() -> CollectorRegistry:
    registry = CollectorRegistry()
    gauges = {
        name: Gauge(name, doc, labels, registry=registry)
        for name, doc, labels in (
            (n, d, ["task", "status"] if n == "refit_queue_jobs" else [])
            for n, d in DATABASE_SERIES.items()
            if n != "refit_payouts"
        )
    }
    gauges["refit_payouts"] = Gauge(
        "refit_payouts", DATABASE_SERIES["refit_payouts"], ["status"], registry=registry
    )
    try:
        res = resources.current()
        settings = res.settings
        async with asyncio.timeout(DATABASE_READ_TIMEOUT_SECONDS), res.engine.connect() as conn:
            for task, status, n in await conn.execute(
                text(
                    "SELECT task_name, status::text, count(*) FROM procrastinate_jobs "
                    "WHERE status IN ('todo', 'doing') GROUP BY 1, 2"
                )
            ):
                gauges["refit_queue_jobs"].labels(task, status).set(n)
            oldest, alive = (
                await conn.execute(
                    text(
                        # A job deferred to run now has no scheduled_at: its wait starts
                        # at its `deferred` event.
                        "SELECT (SELECT coalesce(max(extract(epoch FROM now() - coalesce("
                        "          j.scheduled_at, (SELECT min(e.at) FROM procrastinate_events e"
                        "                           WHERE e.job_id = j.id)))), 0)"
                        "        FROM procrastinate_jobs j WHERE j.status = 'todo'"
                        "        AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())),"
                        "       (SELECT count(*) FROM procrastinate_workers"
                        "        WHERE last_heartbeat > now() - make_interval(secs => :s))"
                    ),
                    {"s": settings.worker_stalled_after_seconds},
                )
            ).one()
            gauges["refit_queue_oldest_due_job_age_seconds"].set(oldest)
            gauges["refit_workers_alive"].set(alive)
            for status, n in await conn.execute(
                text("SELECT status, count(*) FROM payouts GROUP BY status")
            ):
                gauges["refit_payouts"].labels(status).set(n)
            held, on_chain, unprocessed, webhook_age, sanctions_age, balance, daily = (
                await conn.execute(
                    text(
                        # A held payout the sweep gave up on keeps its reason first.
                        "SELECT (SELECT count(*) FROM payouts WHERE status = 'pending'"
                        "        AND starts_with(error, :treasury_low)),"
                        "       (SELECT count(*) FROM payouts WHERE status = 'held'"
                        "        AND hold_reason = 'already_on_chain'),"
                        "       count(*),"
                        "       coalesce(extract(epoch FROM now() - min(received_at)), 0),"
                        # As refit.sanctions.service.list_age: from the publish date, UTC.
                        "       (SELECT extract(epoch FROM now() - (published_on::timestamp"
                        "                                   AT TIME ZONE 'UTC'))"
                        "        FROM sanctions_list),"
                        "       (SELECT lamports FROM treasury_readings ORDER BY at DESC LIMIT 1),"
                        "       (SELECT coalesce(sum(lamports), 0) / 7.0 FROM payouts"
                        "        WHERE status = 'finalized'"
                        "        AND finalized_at > now() - interval '7 days')"
                        " FROM webhook_inbox WHERE processed_at IS NULL AND error IS NULL"
                    ),
                    {"treasury_low": PAYOUT_HELD_TREASURY_LOW},
                )
            ).one()
            gauges["refit_payouts_treasury_too_low"].set(held)
            gauges["refit_payouts_already_on_chain"].set(on_chain)
            gauges["refit_webhooks_unprocessed"].set(unprocessed)
            gauges["refit_webhooks_oldest_unprocessed_age_seconds"].set(webhook_age)
            gauges["refit_sanctions_list_age_seconds"].set(
                math.inf if sanctions_age is None else sanctions_age
            )
            gauges["refit_treasury_balance_lamports"].set(math.nan if balance is None else balance)
            gauges["refit_payouts_daily_average_lamports"].set(daily)
            gauges["refit_sanctions_list_max_age_seconds"].set(
                settings.sanctions_max_age_days * 86_400
            )
        gauges["refit_database_metrics_up"].set(1)
    except Exception as exc:
        log.warning("metrics.database_unavailable", error=describe_error(exc))
        registry = CollectorRegistry()
        Gauge(
            "refit_database_metrics_up",
            DATABASE_SERIES["refit_database_metrics_up"],
            registry=registry,
        ).set(0)
    return registry


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
        body = generate_latest(counted)
    else:
        body = generate_latest()
    body += generate_latest(await _database_series())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
