"""The JSON-RPC methods the local ledger answers, in the shapes a Solana RPC node gives
(https://solana.com/docs/rpc/http). Reads run under the chain's lock; writes take it."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import base58
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from refit.ledger.chain import (
    FINALIZED_AFTER_SLOTS,
    STATUS_CACHE_SLOTS,
    Chain,
    Commitment,
    RpcError,
)
from refit.ledger.journal import TxRecord

SOLANA_CORE_VERSION = "2.2.0"
SLOTS_PER_EPOCH = 432_000
MEMO_PROGRAMS = {
    Pubkey.from_string("MemoSq4gqABAXKb1qDNvfJQ6MSDv65kcvh6tP2Y6W8G"),
    Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"),
}

Params = list[Any]


# --- parameters ------------------------------------------------------------------------
def _arg(params: Params, index: int) -> Any:
    if len(params) <= index:
        raise RpcError(-32602, f"Invalid params: missing parameter {index}")
    return params[index]


def _config(params: Params, index: int) -> dict[str, Any]:
    config = params[index] if len(params) > index else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RpcError(-32602, "Invalid params: the configuration must be an object")
    return config


def _commitment(config: dict[str, Any]) -> Commitment | None:
    commitment = config.get("commitment")
    if commitment not in (None, "processed", "confirmed", "finalized"):
        raise RpcError(-32602, f"Invalid params: unknown commitment {commitment!r}")
    return commitment  # type: ignore[no-any-return]


def _at_least_confirmed(config: dict[str, Any]) -> Commitment | None:
    commitment = _commitment(config)
    if commitment == "processed":
        raise RpcError(-32602, "Method does not support commitment below `confirmed`")
    return commitment


def _check_min_context_slot(
    chain: Chain, config: dict[str, Any], commitment: Commitment | None
) -> None:
    """A node refuses to answer from a view older than the caller's `minContextSlot`: what a
    client asks for when an answer from a node behind would mislead it."""
    wanted = config.get("minContextSlot")
    if wanted is None:
        return
    if not isinstance(wanted, int) or wanted < 0:
        raise RpcError(-32602, "Invalid params: minContextSlot must be a non-negative integer")
    reached = chain.height_at(commitment)
    if reached < wanted:
        raise RpcError(
            -32016, "Minimum context slot has not been reached", {"contextSlot": reached}
        )


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except (TypeError, ValueError):
        raise RpcError(-32602, "Invalid param: Invalid") from None


def _signature(value: Any) -> Signature:
    try:
        return Signature.from_string(value)
    except (TypeError, ValueError):
        raise RpcError(-32602, "Invalid param: Invalid") from None


def _context(chain: Chain, value: Any, commitment: Commitment | None = "processed") -> Any:
    return {
        "context": {"slot": chain.height_at(commitment), "apiVersion": SOLANA_CORE_VERSION},
        "value": value,
    }


# --- shapes ----------------------------------------------------------------------------
def _status(chain: Chain, record: TxRecord) -> dict[str, Any]:
    age = chain.slot - record.slot
    finalized = age >= FINALIZED_AFTER_SLOTS
    return {
        "slot": record.slot,
        "confirmations": None if finalized else age,
        "err": record.err,
        "status": {"Ok": None} if record.err is None else {"Err": record.err},
        "confirmationStatus": "finalized" if finalized else "confirmed" if age else "processed",
    }


def _memo(record: TxRecord) -> str | None:
    keys = record.account_keys
    memos = [
        bytes(ix.data).decode(errors="replace")
        for ix in record.tx.message.instructions
        if keys[ix.program_id_index] in MEMO_PROGRAMS
    ]
    return "; ".join(f"[{len(m)}] {m}" for m in memos) if memos else None


def _transaction_json(record: TxRecord) -> dict[str, Any]:
    message = record.tx.message
    header = message.header
    out: dict[str, Any] = {
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "accountKeys": [str(key) for key in message.account_keys],
        "recentBlockhash": str(message.recent_blockhash),
        "instructions": [
            {
                "programIdIndex": ix.program_id_index,
                "accounts": list(bytes(ix.accounts)),
                "data": base58.b58encode(bytes(ix.data)).decode(),
                "stackHeight": None,
            }
            for ix in message.instructions
        ],
    }
    if isinstance(message, MessageV0):
        out["addressTableLookups"] = [
            {
                "accountKey": str(lookup.account_key),
                "writableIndexes": list(bytes(lookup.writable_indexes)),
                "readonlyIndexes": list(bytes(lookup.readonly_indexes)),
            }
            for lookup in message.address_table_lookups
        ]
    return {"signatures": [str(s) for s in record.tx.signatures], "message": out}


def _meta_json(record: TxRecord) -> dict[str, Any]:
    return {
        "err": record.err,
        "status": {"Ok": None} if record.err is None else {"Err": record.err},
        "fee": record.fee,
        "preBalances": record.pre_balances,
        "postBalances": record.post_balances,
        "innerInstructions": [],
        "logMessages": record.logs,
        "preTokenBalances": [],
        "postTokenBalances": [],
        "rewards": [],
        "loadedAddresses": {"writable": [], "readonly": []},
        "computeUnitsConsumed": record.units,
    }


# --- reads -----------------------------------------------------------------------------
def get_latest_blockhash(chain: Chain, params: Params) -> Any:
    commitment = _commitment(_config(params, 0))
    blockhash, last_valid = chain.latest_blockhash(commitment)
    value = {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid}
    return _context(chain, value, commitment)


def get_block_height(chain: Chain, params: Params) -> Any:
    config = _config(params, 0)
    commitment = _commitment(config)
    _check_min_context_slot(chain, config, commitment)
    return chain.height_at(commitment)


def get_epoch_info(chain: Chain, params: Params) -> Any:
    """One bank's slot and block height together (the same number here: no slot is skipped)."""
    config = _config(params, 0)
    commitment = _commitment(config)
    _check_min_context_slot(chain, config, commitment)
    slot = chain.height_at(commitment)
    return {
        "absoluteSlot": slot,
        "blockHeight": slot,
        "epoch": slot // SLOTS_PER_EPOCH,
        "slotIndex": slot % SLOTS_PER_EPOCH,
        "slotsInEpoch": SLOTS_PER_EPOCH,
        "transactionCount": len(chain.transactions),
    }


def get_signature_statuses(chain: Chain, params: Params) -> Any:
    signatures = _arg(params, 0)
    if not isinstance(signatures, list) or len(signatures) > 256:
        raise RpcError(-32602, "Invalid params: up to 256 signatures")
    search_history = bool(_config(params, 1).get("searchTransactionHistory"))
    statuses: list[Any] = []
    for signature in signatures:
        record = chain.transactions.get(_signature(signature))
        recent = record is not None and chain.slot - record.slot <= STATUS_CACHE_SLOTS
        statuses.append(_status(chain, record) if record and (recent or search_history) else None)
    return _context(chain, statuses)


def get_balance(chain: Chain, params: Params) -> Any:
    # Accounts are read at the processed state whatever the commitment: LiteSVM keeps one.
    address = _pubkey(_arg(params, 0))
    return _context(chain, chain.svm.get_balance(address) or 0, _commitment(_config(params, 1)))


def get_account_info(chain: Chain, params: Params) -> Any:
    address = _pubkey(_arg(params, 0))
    config = _config(params, 1)
    account = chain.svm.get_account(address)
    value = None
    if account is not None and account.lamports > 0:
        data = bytes(account.data)
        encoding = config.get("encoding", "binary")
        encoded: Any
        if encoding in ("binary", "base58"):
            text = base58.b58encode(data).decode()
            encoded = text if encoding == "binary" else [text, "base58"]
        else:
            encoded = [base64.b64encode(data).decode(), "base64"]
        value = {
            "lamports": account.lamports,
            "owner": str(account.owner),
            "data": encoded,
            "executable": account.executable,
            "rentEpoch": account.rent_epoch,
            "space": len(data),
        }
    return _context(chain, value, _commitment(config))


def get_minimum_balance_for_rent_exemption(chain: Chain, params: Params) -> Any:
    size = _arg(params, 0)
    if not isinstance(size, int) or size < 0:
        raise RpcError(-32602, "Invalid params: the data length must be a non-negative integer")
    return chain.svm.minimum_balance_for_rent_exemption(size)


def get_transaction(chain: Chain, params: Params) -> Any:
    signature = _signature(_arg(params, 0))
    config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
    if len(params) > 1 and isinstance(params[1], str):  # the old positional encoding
        config = {"encoding": params[1]}
    commitment = _at_least_confirmed(config)
    record = chain.transactions.get(signature)
    if record is None or record.slot > chain.height_at(commitment):
        return None
    legacy = isinstance(record.tx.message, Message)
    if not legacy and config.get("maxSupportedTransactionVersion") is None:
        raise RpcError(
            -32015,
            "Transaction version (0) is not supported by the requesting client. Please try the"
            " request again with the following configuration parameter:"
            ' "maxSupportedTransactionVersion": 0',
        )
    encoding = config.get("encoding", "json")
    transaction: Any
    if encoding == "base64":
        transaction = [base64.b64encode(bytes(record.tx)).decode(), "base64"]
    elif encoding in ("json", "jsonParsed"):
        transaction = _transaction_json(record)
    else:
        raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
    return {
        "slot": record.slot,
        "blockTime": record.block_time,
        "transaction": transaction,
        "meta": _meta_json(record),
        "version": "legacy" if legacy else 0,
    }


def get_signatures_for_address(chain: Chain, params: Params) -> Any:
    """Newest first, like a node: `before` and `until` bound the page, `limit` up to 1000."""
    address = _pubkey(_arg(params, 0))
    config = _config(params, 1)
    commitment = _at_least_confirmed(config)
    _check_min_context_slot(chain, config, commitment)
    visible_to = chain.height_at(commitment)
    limit = config.get("limit") or 1000
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise RpcError(-32602, "Invalid params: limit must be 1..1000")
    before = _signature(config["before"]) if config.get("before") else None
    until = _signature(config["until"]) if config.get("until") else None
    found: list[Any] = []
    started = before is None
    for signature in reversed(chain.signatures_for(address)):
        if not started:
            started = signature == before
            continue
        if signature == until or len(found) == limit:
            break
        record = chain.transactions[signature]
        if record.slot > visible_to:
            continue
        status = _status(chain, record)
        found.append(
            {
                "signature": str(signature),
                "slot": record.slot,
                "err": record.err,
                "memo": _memo(record),
                "blockTime": record.block_time,
                "confirmationStatus": status["confirmationStatus"],
            }
        )
    return found


def get_recent_prioritization_fees(chain: Chain, params: Params) -> Any:
    # Nobody competes for block space here: the going priority fee is nothing.
    first = max(0, chain.slot - STATUS_CACHE_SLOTS + 1)
    return [{"slot": slot, "prioritizationFee": 0} for slot in range(first, chain.slot + 1)]


def get_slot(chain: Chain, params: Params) -> Any:
    return chain.height_at(_commitment(_config(params, 0)))


def get_health(chain: Chain, params: Params) -> Any:
    return "ok"


def get_version(chain: Chain, params: Params) -> Any:
    return {"solana-core": SOLANA_CORE_VERSION, "feature-set": 0}


def get_genesis_hash(chain: Chain, params: Params) -> Any:
    return str(chain.genesis_hash)


# --- writes ----------------------------------------------------------------------------
async def send_transaction(chain: Chain, params: Params) -> Any:
    encoded = _arg(params, 0)
    config = _config(params, 1)
    encoding = config.get("encoding", "base58")
    try:
        if encoding == "base64":
            raw = base64.b64decode(encoded, validate=True)
        elif encoding == "base58":
            raw = base58.b58decode(encoded)
        else:
            raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
        tx = VersionedTransaction.from_bytes(raw)
    except (TypeError, ValueError) as exc:
        raise RpcError(-32602, f"failed to deserialize VersionedTransaction: {exc}") from None
    signature = await chain.send(tx, skip_preflight=bool(config.get("skipPreflight")))
    return str(signature)


async def request_airdrop(chain: Chain, params: Params) -> Any:
    address = _pubkey(_arg(params, 0))
    lamports = _arg(params, 1)
    if not isinstance(lamports, int) or lamports <= 0:
        raise RpcError(-32602, "Invalid params: lamports must be a positive integer")
    return str(await chain.airdrop(address, lamports))


Read = Callable[[Chain, Params], Any]
Write = Callable[[Chain, Params], Awaitable[Any]]

READS: dict[str, Read] = {
    "getLatestBlockhash": get_latest_blockhash,
    "getBlockHeight": get_block_height,
    "getEpochInfo": get_epoch_info,
    "getSlot": get_slot,
    "getSignatureStatuses": get_signature_statuses,
    "getBalance": get_balance,
    "getAccountInfo": get_account_info,
    "getMinimumBalanceForRentExemption": get_minimum_balance_for_rent_exemption,
    "getTransaction": get_transaction,
    "getSignaturesForAddress": get_signatures_for_address,
    "getRecentPrioritizationFees": get_recent_prioritization_fees,
    "getHealth": get_health,
    "getVersion": get_version,
    "getGenesisHash": get_genesis_hash,
}
WRITES: dict[str, Write] = {
    "sendTransaction": send_transaction,
    "requestAirdrop": request_airdrop,
}
