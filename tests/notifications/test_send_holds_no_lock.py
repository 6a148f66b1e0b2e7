"""The send job holds no transaction, row lock or pooled connection while the SMTP server has
the message; two jobs for one email never run at once. The server is held inside DATA until
the test lets it answer, so "during the send" is a real moment, not a sleep."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from sqlalchemy import text

from refit import db
from refit.notifications.service import queue_email
from refit.notifications.tasks import defer_send
from tests.notifications.smtp_server import smtp_server

# Bound on every wait for an event: a broken job fails the test instead of hanging it.
DEADLINE = 15


async def _queue(resources) -> uuid.UUID:
    async with resources.sessionmaker() as session, session.begin():
        return await queue_email(
            session,
            to="seller@example.com",
            template="order_returning",
            context={"device": "Apple iPhone 13", "order_number": "RF-1"},
        )


async def _send_jobs(resources) -> list[str]:
    async with resources.sessionmaker() as session:
        return list(
            await session.scalars(
                text(
                    "SELECT status FROM procrastinate_jobs "
                    "WHERE task_name = 'notifications.send_email' ORDER BY id"
                )
            )
        )


async def _sent_at(resources, email_id):
    async with resources.sessionmaker() as session:
        return await session.scalar(
            text("SELECT sent_at FROM outbound_emails WHERE id = :id"), {"id": email_id}
        )


async def test_no_transaction_is_open_while_the_server_has_the_message(
    resources, settings, run_jobs
):
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        smtp.release = asyncio.Event()
        email_id = await _queue(resources)
        worker = asyncio.create_task(run_jobs())
        try:
            await asyncio.wait_for(smtp.waiting.wait(), DEADLINE)
            async with await psycopg.AsyncConnection.connect(
                db.libpq_url(settings.database_url), autocommit=True
            ) as other:
                # NOWAIT raises LockNotAvailable at once if the job still held the row.
                async with other.transaction():
                    cursor = await other.execute(
                        "SELECT id FROM outbound_emails WHERE id = %s FOR UPDATE NOWAIT",
                        (email_id,),
                    )
                    assert await cursor.fetchone() == (email_id,)
                # No open transaction has touched the mail log: one that had would hold a
                # lock on the table until it ends. (Not "no idle transaction at all": the
                # worker's own fetch of the next job can be caught between query and commit.)
                # In this database only: every test database is a copy of one template, so
                # the table has the same oid in the other tests' databases running meanwhile.
                cursor = await other.execute(
                    "SELECT a.pid, a.state, a.query FROM pg_locks l JOIN pg_stat_activity a "
                    "USING (pid) WHERE l.relation = 'outbound_emails'::regclass "
                    "AND a.datname = current_database() AND a.pid <> pg_backend_pid()"
                )
                assert await cursor.fetchall() == []
        finally:
            smtp.release.set()
            await asyncio.wait_for(worker, DEADLINE)
    assert len(smtp.messages) == 1
    assert await _sent_at(resources, email_id) is not None
    assert await _send_jobs(resources) == ["succeeded"]


async def test_two_jobs_for_one_email_never_run_at_once(resources, settings, run_jobs):
    async with smtp_server() as smtp:
        settings.smtp_url = smtp.url
        smtp.release = asyncio.Event()
        email_id = await _queue(resources)
        # A second job for the same email, as a duplicate defer or a stalled job put back makes.
        async with resources.sessionmaker() as session, session.begin():
            await defer_send(session, email_id)
        worker = asyncio.create_task(run_jobs())
        try:
            await asyncio.wait_for(smtp.waiting.wait(), DEADLINE)
            # The first is in the middle of its send; the second is not even fetched (the
            # worker, told not to wait, stops once nothing else can run).
            assert await _send_jobs(resources) == ["doing", "todo"]
        finally:
            smtp.release.set()
            await asyncio.wait_for(worker, DEADLINE)
        assert smtp.in_data == 1
        # Now the second runs: it finds the row marked sent and sends nothing.
        await asyncio.wait_for(run_jobs(), DEADLINE)
    assert await _send_jobs(resources) == ["succeeded", "succeeded"]
    assert len(smtp.messages) == 1
    assert await _sent_at(resources, email_id) is not None
