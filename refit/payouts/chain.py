"""The payout's calls to Solana (solana-py), none of them inside a database transaction: the
same code against the local ledger and a real cluster."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from solana.rpc.commitment import Commitment, Confirmed, Finalized
from solders.hash import Hash
from solders.instruction import AccountMeta
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

if TYPE_CHECKING:
    # solana-py's client and models cost ~0.3 s of CPU at import (pydantic models, its own
    # httpx): only the processes that reach the chain pay for them, when they first do.
    from solana.rpc.async_api import AsyncClient

# getSignaturesForAddress answers at most this many a call (the RPC's own limit).
SIGNATURES_PAGE = 1000

# The network fee of a transfer signed by one key (5,000 lamports per signature).
TRANSFER_FEE_LAMPORTS = 5000


async def rent_exempt_minimum(rpc: AsyncClient) -> int:
    """The least a plain system account (no data) may hold and stay open."""
    return (await rpc.get_minimum_balance_for_rent_exemption(0)).value


def order_reference(order_id: uuid.UUID) -> Pubkey:
    """The key an order's transfer carries, derived from the order's id alone: "did we pay
    order X?" is answered from the chain even when our table lost the payout (a database
    restored from an older backup). 32 bytes no one can sign for; only to be found by."""
    return Pubkey(hashlib.sha256(b"refit/payout-reference/v1:" + order_id.bytes).digest())


async def transfers_by_reference(
    rpc: AsyncClient,
    reference: Pubkey,
    *,
    commitment: Commitment = Confirmed,
    min_context_slot: int | None = None,
) -> list[str]:
    """Transactions carrying the reference that succeeded or may still (at `commitment` or
    later, without error), oldest first: every page, not the newest 1,000 (anyone can send
    transactions naming the key, for 5,000 lamports each, and push ours off the first page).
    With `min_context_slot`, a node whose view is older raises `ViewBehind` instead of
    answering from it."""
    # solana-py's models cost ~0.3 s at import; only a process that reaches the chain pays.
    from solana.rpc.core import RPCException
    from solders.rpc.errors import MinContextSlotNotReachedMessage

    newest_first: list[str] = []
    before: Signature | None = None
    while True:
        try:
            response = await rpc.get_signatures_for_address(
                reference,
                before=before,
                limit=SIGNATURES_PAGE,
                commitment=commitment,
                min_context_slot=min_context_slot,
            )
        except RPCException as exc:
            if exc.args and isinstance(exc.args[0], MinContextSlotNotReachedMessage):
                raise ViewBehind(str(exc.args[0].message)) from exc
            raise
        page = response.value
        newest_first.extend(str(s.signature) for s in page if s.err is None)
        if len(page) < SIGNATURES_PAGE:
            return newest_first[::-1]
        before = page[-1].signature


class ViewBehind(Exception):
    """The node that answered has not reached the slot the question was asked at."""


@dataclass(frozen=True)
class FinalizedView:
    """One finalized bank's slot and block height, read together from one node."""

    slot: int
    block_height: int


async def finalized_view(rpc: AsyncClient) -> FinalizedView:
    info = (await rpc.get_epoch_info(Finalized)).value
    return FinalizedView(info.absolute_slot, info.block_height)


async def recipient_shortfall(rpc: AsyncClient, recipient: Pubkey) -> int:
    """The least a transfer must carry for the recipient to end rent-exempt: 0 for a wallet
    already open; the whole minimum for a new (empty) one, which the chain would otherwise
    refuse to open ("insufficient funds for rent")."""
    held = (await rpc.get_balance(recipient)).value
    return max(0, await rent_exempt_minimum(rpc) - held)


@dataclass(frozen=True)
class Blockhash:
    blockhash: Hash
    last_valid_block_height: int


async def latest_blockhash(rpc: AsyncClient) -> Blockhash:
    value = (await rpc.get_latest_blockhash(Confirmed)).value
    return Blockhash(value.blockhash, value.last_valid_block_height)


def sign_transfer(
    treasury: Keypair, recipient: Pubkey, lamports: int, reference: Pubkey, blockhash: Hash
) -> VersionedTransaction:
    """The treasury's transfer to the seller, carrying the order's reference key as a
    read-only non-signer account (findable with getSignaturesForAddress)."""
    instruction = transfer(
        TransferParams(from_pubkey=treasury.pubkey(), to_pubkey=recipient, lamports=lamports)
    )
    instruction.accounts = [*instruction.accounts, AccountMeta(reference, False, False)]
    message = MessageV0.try_compile(treasury.pubkey(), [instruction], [], blockhash)
    return VersionedTransaction(message, [treasury])


class SendRefused(Exception):
    """The RPC refused the transaction for a reason that is not "already processed" or "its
    blockhash is gone" (for instance the treasury cannot pay)."""


async def send(rpc: AsyncClient, signed_tx: bytes) -> bool:
    """Broadcast the stored bytes. True when the RPC took them or had them already; False
    when their blockhash is unknown (expired: the status check decides). Connection errors
    propagate: the job is retried and sends the same bytes again."""
    # solana-py's models cost ~0.3 s at import; only a process that broadcasts needs them.
    from solana.rpc.core import RPCException
    from solana.rpc.models import TxOpts

    try:
        await rpc.send_raw_transaction(
            signed_tx, opts=TxOpts(skip_preflight=False, preflight_commitment=Confirmed)
        )
    except RPCException as exc:
        message = str(exc)
        if "already been processed" in message or "AlreadyProcessed" in message:
            return True
        if "Blockhash not found" in message or "BlockhashNotFound" in message:
            return False
        raise SendRefused(message[:500]) from exc
    return True


class Landing(StrEnum):
    FINALIZED = "finalized"  # landed, no error, finalized
    FAILED = "failed"  # landed with an error, finalized: nothing was transferred
    PENDING = "pending"  # seen but not final (with or without an error), or unseen while
    # its blockhash still lives
    EXPIRED = "expired"  # unseen with history searched, and past its last valid height


async def landing(rpc: AsyncClient, signature: Signature, last_valid_block_height: int) -> Landing:
    """Where the transaction stands; landed (without or with an error) only once finalized.
    The block height is read BEFORE the status: once past the last valid height the
    transaction can never be processed. An absent status is EXPIRED, but a node behind may
    answer absent for a transaction that landed: nothing is signed on this answer alone
    (`signing_guard.clear_to_sign` asks the finalized view first)."""
    height = (await rpc.get_block_height(Finalized)).value
    status = (await rpc.get_signature_statuses([signature], search_transaction_history=True)).value[
        0
    ]
    if status is None:
        return Landing.EXPIRED if height > last_valid_block_height else Landing.PENDING
    if status.confirmation_status != TransactionConfirmationStatus.Finalized:
        # An error seen at processed or confirmed is not final: the block may still be
        # dropped for a fork where the transfer lands without one.
        return Landing.PENDING
    return Landing.FAILED if status.err is not None else Landing.FINALIZED


# The system program's Transfer instruction: its index (2) as a u32, then the lamports as a u64.
_TRANSFER = (2).to_bytes(4, "little")


class NotReadable(Exception):
    """The node has no finalized record of a transaction another call just listed (a node
    behind, behind a load balancer): ask again later, decide nothing on it."""


@dataclass(frozen=True)
class FoundTransfer:
    """A finalized, successful transaction's one system transfer and the keys it carries."""

    signature: str
    source: str
    recipient: str
    lamports: int
    accounts: frozenset[str]
    slot: int


@dataclass(frozen=True)
class Landed:
    """A finalized, successful transaction: who signed it, and its transfer when it is
    exactly one system transfer (what our payouts are; anything else is None)."""

    signers: frozenset[str]
    transfer: FoundTransfer | None


async def read_landed(rpc: AsyncClient, signature: str) -> Landed | None:
    """The transaction `signature`, read at finalized; None when the chain has no such
    finalized transaction or it failed. The one parser of a landed transfer: the resolve, the
    reconciliation and the signing guard all read through it."""
    found = (
        await rpc.get_transaction(
            Signature.from_string(signature),
            encoding="base64",
            commitment=Finalized,
            max_supported_transaction_version=0,
        )
    ).value
    if found is None:
        return None
    meta = found.transaction.meta
    tx = found.transaction.transaction
    if meta is None or meta.err is not None or not isinstance(tx, VersionedTransaction):
        return None
    keys = tx.message.account_keys
    signers = frozenset(str(k) for k in keys[: tx.message.header.num_required_signatures])
    transfers = [
        ix
        for ix in tx.message.instructions
        if keys[ix.program_id_index] == SYSTEM_PROGRAM_ID
        and len(ix.data) == 12
        and bytes(ix.data[:4]) == _TRANSFER
    ]
    if len(transfers) != 1:
        return Landed(signers, None)
    ix = transfers[0]
    accounts = [str(keys[i]) for i in bytes(ix.accounts)]
    transfer = FoundTransfer(
        signature=signature,
        source=accounts[0],
        recipient=accounts[1],
        lamports=int.from_bytes(bytes(ix.data[4:12]), "little"),
        accounts=frozenset(accounts),
        slot=found.slot,
    )
    return Landed(signers, transfer)


async def find_transfer(rpc: AsyncClient, signature: str) -> FoundTransfer | None:
    """The one system transfer `signature` made, finalized and successful; None otherwise."""
    landed = await read_landed(rpc, signature)
    return landed.transfer if landed is not None else None
