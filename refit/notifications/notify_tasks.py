"""`notifications.notify_user`: the job other domains defer by name to email a user.

A caller (orders, after a status change) defers it in its own transaction with JSON kwargs, so
the email exists iff the change committed, and the caller never imports this package.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import procrastinate

from refit.models import OutboundEmail
from refit.notifications import service
from refit.notifications.render import template_exists
from refit.one_message import Step, job_messages
from refit.queue import exponential_retry, job_connections, queue
from refit.transactions import service_transaction

# Only the database is involved: a few quick retries ride out a lost connection or a deadlock.
NOTIFY_RETRY = exponential_retry(5)

_QUEUED = "SELECT 1 FROM outbound_emails WHERE id = %(id)s"
# What `service.notify_user` asks of the user before it queues anything.
_REACHABLE = (
    "SELECT email IS NOT NULL AND email <> '' AND email_verified AS reachable FROM users "
    "WHERE id = %(id)s"
)

# Namespace of the mail log ids this job derives from its own (see `_email_id`).
_EMAIL_IDS = uuid.UUID("da2bd3a0-09fb-470b-8b55-38316e1ca8c6")


@queue.task(name="notifications.notify_user", retry=NOTIFY_RETRY, pass_context=True)
async def notify_user(
    job: procrastinate.JobContext, user_id: str, template: str, context: dict[str, Any]
) -> None:
    """Queue `template` for the user's verified address; without one, log and do nothing."""
    # The caller's bug, whoever the user is: fail the job (recorded in job_errors, left failed
    # for an operator once retries are spent) rather than skip an email without a word.
    if not template_exists(template):
        raise ValueError(f"unknown email template {template!r}")
    email_id = _email_id(job, user_id, template, context)
    # Most sellers have no verified address (and a rerun finds its email queued): both
    # known from one message, read only, before a transaction that writes is opened.
    async with job_messages(job_connections()) as reads:
        queued, users = await reads.send(
            Step(_QUEUED, {"id": email_id}),
            Step(_REACHABLE, {"id": uuid.UUID(user_id)}),
            commit=True,
        )
    if queued:
        return
    if not users or not users[0]["reachable"]:
        service.log_skipped(uuid.UUID(user_id), template)
        return
    async with service_transaction(job=True) as session:
        # A rerun of a job that committed (its worker died before procrastinate recorded it
        # done) finds the email it queued, instead of mailing the user twice.
        if await session.get(OutboundEmail, email_id) is not None:
            return
        await service.notify_user(session, uuid.UUID(user_id), template, context, email_id=email_id)


def _email_id(
    job: procrastinate.JobContext, user_id: str, template: str, context: dict[str, Any]
) -> uuid.UUID:
    """The same id on every run of one job. Job ids alone could repeat if the queue's tables
    were ever recreated: the payload is part of the name, so only the same email would match."""
    assert job.job is not None and job.job.id is not None
    payload = json.dumps([user_id, template, context], sort_keys=True)
    return uuid.uuid5(_EMAIL_IDS, f"{job.job.id}:{payload}")
