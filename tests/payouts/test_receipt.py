"""The "you have been paid" email is a receipt the seller can check: the SOL paid, the rate
it was priced at (and where and when the rate was read), and the transaction: a link to the
cluster's explorer, or on the local ledger the signature alone."""

from __future__ import annotations

import email
import email.policy

from sqlalchemy import update

from refit.models import User
from refit.orders.reads import explorer_url, public_explorer_url
from tests.payouts.conftest import as_quoted_order, pay, payout_row


def _outbox(settings) -> list[email.message.EmailMessage]:
    folder = settings.outbox_dir
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


async def test_the_paid_email_says_what_was_paid_at_what_rate_and_where(
    client, resources, settings, make_user, run_jobs, paying
):
    order_id, _, seller = await as_quoted_order(client, resources, make_user, paying)
    async with resources.sessionmaker() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == seller.id)
            .values(email="ada@example.com", email_verified=True)
        )
    assert (await pay(client, order_id, paying.admin)).status_code == 202
    await run_jobs()
    await run_jobs()

    payout = await payout_row(resources, order_id)
    assert payout.status == "finalized"
    [paid] = [m for m in _outbox(settings) if "You have been paid" in m["Subject"]]
    assert paid["To"] == "ada@example.com"
    text = paid.get_body(preferencelist=("plain",)).get_content()
    html = paid.get_body(preferencelist=("html",)).get_content()
    # $442 at the fixed test rate of $150 (its source recorded on the payout).
    assert "You were paid 2.9466 SOL, at $150 per SOL (fixed" in text
    # The local ledger: the signature alone, no link only this machine could open.
    assert f"Transaction: {payout.signature}\n" in text
    assert "explorer" not in text and "explorer" not in html
    assert f"<code>{payout.signature}</code>" in html


async def test_the_link_names_the_cluster_the_rpc_serves(resources, settings):
    signature = "5" * 88
    tx = f"https://explorer.solana.com/tx/{signature}"
    for rpc, link in [
        ("https://api.devnet.solana.com", f"{tx}?cluster=devnet"),
        ("https://api.testnet.solana.com", f"{tx}?cluster=testnet"),
        ("https://mainnet.helius-rpc.com/?api-key=secret", tx),
        ("http://127.0.0.1:8899", None),
    ]:
        settings.solana_rpc_url = rpc
        assert public_explorer_url(signature) == link
        # The seller's order page, on this machine, links even the local ledger.
        assert explorer_url(signature) == link or link is None
