"""The local chain: one LiteSVM, a clock that makes slots, blockhashes that expire, signature
statuses that age from processed to finalized, and a journal that survives restarts.

LiteSVM accepts only its one latest blockhash and keeps no slots; a cluster accepts any
blockhash of the last 150 blocks. So LiteSVM's own check is off and this module keeps the
blockhash queue: one blockhash per slot, derived from the genesis hash, valid while the block
height is at most its height + 150 (its `lastValidBlockHeight`). No slot is skipped here, so
block height and slot are the same number.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, Literal

from solders.account import Account
from solders.hash import Hash
from solders.instruction import AccountMeta
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import TransactionErrorFieldless

from refit.ledger.journal import Journal, TxRecord

# A blockhash is usable for 150 blocks after its own (solana's MAX_PROCESSING_AGE).
MAX_PROCESSING_AGE = 150
# Signatures answered without searchTransactionHistory: the recent status cache.
STATUS_CACHE_SLOTS = 150
# A status is finalized this many slots after it landed (a rooted block, roughly).
FINALIZED_AFTER_SLOTS = 32
FAUCET_LAMPORTS = 500_000_000 * 1_000_000_000

Commitment = Literal["processed", "confirmed", "finalized"]


class RpcError(Exception):
    """A JSON-RPC error object: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def error_json(err: Any) -> Any:
    """A solders TransactionError in the RPC's JSON form (`"BlockhashNotFound"`,
    `{"InstructionError": [0, {"Custom": 1}]}`, ...)."""
    return json.loads(RpcSimulateTransactionResult(err=err).to_json())["err"]


def _describe(err: Any) -> str:
    # The validator's wording for the errors a payout meets; the rest as their JSON.
    if err == "BlockhashNotFound":
        return "Blockhash not found"
    if err == "AlreadyProcessed":
        return "This transaction has already been processed"
    if isinstance(err, dict) and "InsufficientFundsForRent" in err:
        index = err["InsufficientFundsForRent"]["account_index"]
        return f"Transaction results in an account ({index}) with insufficient funds for rent"
    if isinstance(err, dict) and "InstructionError" in err:
        index, detail = err["InstructionError"]
        if isinstance(detail, dict) and "Custom" in detail:
            detail = f"custom program error: {detail['Custom']:#x}"
        return f"Error processing Instruction {index}: {detail}"
    return str(err)


def preflight_failure(err: Any, logs: list[str] | None = None, units: int = 0) -> RpcError:
    data = json.loads(RpcSimulateTransactionResult(err=None).to_json())
    data.update(err=err, logs=logs or [], unitsConsumed=units)
    return RpcError(-32002, f"Transaction simulation failed: {_describe(err)}", data)


class Chain:
    """The ledger's state. Every public coroutine takes `lock`, the one door to LiteSVM."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.lock = asyncio.Lock()
        self.svm = LiteSVM().with_blockhash_check(False)
        self.genesis_hash = journal.genesis_hash()
        self.faucet = Keypair.from_seed(
            hashlib.sha256(b"refit-ledger-faucet" + bytes(self.genesis_hash)).digest()
        )
        self.transactions: dict[Signature, TxRecord] = {}
        self._by_address: dict[Pubkey, list[Signature]] = {}
        self._blockhashes: dict[Hash, int] = {}
        self._slot_hashes: dict[int, Hash] = {}
        self.slot = 0
        accounts: dict[Pubkey, Account] = {}
        for record in journal.records():
            accounts.update(record.changed)
            self._remember(record)
            self.slot = max(self.slot, record.slot)
        for key, account in accounts.items():
            self.svm.set_account(key, account)
        if self.svm.get_account(self.faucet.pubkey()) is None:
            self.svm.set_account(
                self.faucet.pubkey(), Account(FAUCET_LAMPORTS, b"", SYSTEM_PROGRAM_ID)
            )
        self._set_slot(max(self.slot, journal.saved_slot()))

    # --- time ---------------------------------------------------------------------------
    def _blockhash_of(self, slot: int) -> Hash:
        return Hash(hashlib.sha256(bytes(self.genesis_hash) + slot.to_bytes(8, "little")).digest())

    def _set_slot(self, slot: int) -> None:
        first = self.slot + 1 if self._slot_hashes else 0
        for s in range(max(first, slot - MAX_PROCESSING_AGE), slot + 1):
            blockhash = self._blockhash_of(s)
            self._blockhashes[blockhash] = s
            self._slot_hashes[s] = blockhash
        self.slot = slot
        for s in [s for s in self._slot_hashes if s < slot - MAX_PROCESSING_AGE]:
            del self._blockhashes[self._slot_hashes.pop(s)]
        self.svm.warp_to_slot(slot)
        self.journal.save_slot(slot)

    async def advance(self, slots: int = 1) -> int:
        """Move the clock `slots` forward (the ticker, or a test in a hurry)."""
        async with self.lock:
            self._set_slot(self.slot + slots)
            return self.slot

    async def run_clock(self, slot_ms: float) -> None:
        """A slot every `slot_ms`, caught up after a busy loop so time stays real."""
        period = slot_ms / 1000
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(max(0.0, last + period - loop.time()))
            due = int((loop.time() - last) / period)
            if due:
                last += due * period
                await self.advance(due)

    def height_at(self, commitment: Commitment | None) -> int:
        # A commitment names an older block: confirmed one slot back, finalized 32 back.
        if commitment == "processed":
            return self.slot
        if commitment == "confirmed":
            return max(0, self.slot - 1)
        return max(0, self.slot - FINALIZED_AFTER_SLOTS)

    def latest_blockhash(self, commitment: Commitment | None) -> tuple[Hash, int]:
        height = self.height_at(commitment)
        return self._slot_hashes[height], height + MAX_PROCESSING_AGE

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        return blockhash in self._blockhashes

    # --- transactions -------------------------------------------------------------------
    def _remember(self, record: TxRecord) -> None:
        self.transactions[record.signature] = record
        for key in dict.fromkeys(record.account_keys):
            self._by_address.setdefault(key, []).append(record.signature)

    async def send(self, tx: VersionedTransaction, *, skip_preflight: bool) -> Signature:
        """Process `tx` as a validator would. With preflight, a transaction that would fail is
        refused (-32002) and changes nothing; without it, one that cannot land is dropped
        silently and one that fails on chain lands with its error and pays its fee."""
        signature = tx.signatures[0]
        async with self.lock:
            if signature in self.transactions:
                return self._refuse(signature, "AlreadyProcessed", skip_preflight)
            if tx.message.recent_blockhash not in self._blockhashes:
                return self._refuse(signature, "BlockhashNotFound", skip_preflight)
            if not skip_preflight:
                simulated = self.svm.simulate_transaction(tx)
                if isinstance(simulated, FailedTransactionMetadata):
                    meta = simulated.meta()
                    err = error_json(simulated.err())
                    if simulated.err() == TransactionErrorFieldless.SignatureFailure:
                        raise RpcError(-32003, "Transaction signature verification failure")
                    raise preflight_failure(err, meta.logs(), meta.compute_units_consumed())
            keys = list(tx.message.account_keys)
            before = [self.svm.get_account(key) for key in keys]
            result = self.svm.send_transaction(tx)
            after = [self.svm.get_account(key) for key in keys]
            err = None
            if isinstance(result, FailedTransactionMetadata):
                err = error_json(result.err())
                if before[0] == after[0]:  # the fee payer paid nothing: it never landed
                    return self._refuse(signature, err, skip_preflight)
            meta = result.meta() if isinstance(result, FailedTransactionMetadata) else result
            record = TxRecord(
                tx=tx,
                slot=self.slot,
                block_time=int(time.time()),
                err=err,
                fee=meta.fee(),
                pre_balances=[a.lamports if a else 0 for a in before],
                post_balances=[a.lamports if a else 0 for a in after],
                logs=list(meta.logs()),
                units=meta.compute_units_consumed(),
                changed={
                    key: a or Account(0, b"", SYSTEM_PROGRAM_ID)
                    for key, b, a in zip(keys, before, after, strict=True)
                    if a != b
                },
            )
            # Durable before anyone hears of it: a crash here loses a transaction nobody saw.
            await asyncio.to_thread(self.journal.append, record)
            self._remember(record)
            return signature

    def _refuse(self, signature: Signature, err: Any, skip_preflight: bool) -> Signature:
        if skip_preflight:
            # A validator takes the bytes, answers with the signature, and they never land.
            return signature
        raise preflight_failure(err)

    async def airdrop(self, to: Pubkey, lamports: int) -> Signature:
        """A transfer from the ledger's faucet (a real, signed transaction, like
        solana-test-validator's). A throwaway read-only key makes each one unique."""
        async with self.lock:
            blockhash = self._slot_hashes[self.slot]
        instruction = transfer(
            TransferParams(from_pubkey=self.faucet.pubkey(), to_pubkey=to, lamports=lamports)
        )
        unique = AccountMeta(Keypair().pubkey(), is_signer=False, is_writable=False)
        instruction.accounts = [*instruction.accounts, unique]
        message = MessageV0.try_compile(self.faucet.pubkey(), [instruction], [], blockhash)
        return await self.send(VersionedTransaction(message, [self.faucet]), skip_preflight=False)

    def signatures_for(self, address: Pubkey) -> list[Signature]:
        """Every transaction naming `address` among its account keys, oldest first."""
        return self._by_address.get(address, [])
