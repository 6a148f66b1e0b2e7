"""What the local ledger keeps on disk, so a restart finds the same chain.

LiteSVM cannot save itself, so the ledger keeps, under its directory:
- `genesis.json`: the genesis hash, written once; every blockhash derives from it;
- `transactions.jsonl`: one line per transaction that landed, appended and fsync'd before the
  sender hears back: the signed bytes, its slot and result, and the accounts it changed (their
  state after it). Replayed in order, it rebuilds the accounts and the signature statuses;
- `clock.json`: the current slot, replaced at every tick (an atomic rename: a killed process
  loses nothing; only a machine crash can roll the clock back a little).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solders.account import Account
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction


@dataclass
class TxRecord:
    """A transaction that landed (err is None) or landed and failed (its fee was still paid)."""

    tx: VersionedTransaction
    slot: int
    block_time: int
    err: Any  # the RPC's JSON form of the TransactionError, or None
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    logs: list[str]
    units: int
    changed: dict[Pubkey, Account] = field(default_factory=dict)

    @property
    def signature(self) -> Signature:
        return self.tx.signatures[0]

    @property
    def account_keys(self) -> list[Pubkey]:
        return list(self.tx.message.account_keys)


def _account_json(account: Account) -> dict[str, Any]:
    return {
        "lamports": account.lamports,
        "owner": str(account.owner),
        "data": base64.b64encode(bytes(account.data)).decode(),
        "executable": account.executable,
        "rentEpoch": account.rent_epoch,
    }


def _account_from_json(row: dict[str, Any]) -> Account:
    return Account(
        lamports=row["lamports"],
        data=base64.b64decode(row["data"]),
        owner=Pubkey.from_string(row["owner"]),
        executable=row["executable"],
        rent_epoch=row["rentEpoch"],
    )


def _record_json(record: TxRecord) -> dict[str, Any]:
    return {
        "signature": str(record.signature),
        "slot": record.slot,
        "blockTime": record.block_time,
        "tx": base64.b64encode(bytes(record.tx)).decode(),
        "err": record.err,
        "fee": record.fee,
        "preBalances": record.pre_balances,
        "postBalances": record.post_balances,
        "logs": record.logs,
        "units": record.units,
        "accounts": {str(key): _account_json(acc) for key, acc in record.changed.items()},
    }


def _record_from_json(row: dict[str, Any]) -> TxRecord:
    return TxRecord(
        tx=VersionedTransaction.from_bytes(base64.b64decode(row["tx"])),
        slot=row["slot"],
        block_time=row["blockTime"],
        err=row["err"],
        fee=row["fee"],
        pre_balances=row["preBalances"],
        post_balances=row["postBalances"],
        logs=row["logs"],
        units=row["units"],
        changed={Pubkey.from_string(k): _account_from_json(v) for k, v in row["accounts"].items()},
    )


def _write_atomically(path: Path, text: str, *, sync: bool) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class Journal:
    """The ledger's directory. `None` as directory: a ledger kept in memory only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def genesis_hash(self) -> Hash:
        if self.directory is None:
            return Hash(secrets.token_bytes(32))
        path = self.directory / "genesis.json"
        if path.exists():
            return Hash.from_string(json.loads(path.read_text())["hash"])
        genesis = Hash(secrets.token_bytes(32))
        _write_atomically(path, json.dumps({"hash": str(genesis)}), sync=True)
        return genesis

    def saved_slot(self) -> int:
        if self.directory is None:
            return 0
        path = self.directory / "clock.json"
        return int(json.loads(path.read_text())["slot"]) if path.exists() else 0

    def save_slot(self, slot: int) -> None:
        if self.directory is not None:
            _write_atomically(self.directory / "clock.json", json.dumps({"slot": slot}), sync=False)

    def records(self) -> Iterator[TxRecord]:
        """The transactions in the order they landed. A line cut short by a crash (its sender
        never heard back) is dropped from the file."""
        if self.directory is None:
            return
        path = self.directory / "transactions.jsonl"
        if not path.exists():
            return
        good = 0
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    record = _record_from_json(json.loads(line))
                except ValueError:
                    break
                good += len(line)
                yield record
        if good != path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())

    def append(self, record: TxRecord) -> None:
        """Blocking (fsync): called in a thread."""
        if self.directory is None:
            return
        line = json.dumps(_record_json(record), separators=(",", ":")) + "\n"
        with open(self.directory / "transactions.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
