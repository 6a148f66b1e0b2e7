"""The JSON-RPC envelope itself (batches, unknown methods, bad params, getHealth, which
solana-py does not wrap), minContextSlot, and a ledger that finds its port or its directory
taken."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from solana.rpc.commitment import Finalized
from solana.rpc.core import RPCException
from solders.pubkey import Pubkey
from solders.rpc.errors import MinContextSlotNotReachedMessage

from refit.ledger.server import LedgerServer
from refit.settings import Settings
from tests.ledger.conftest import Running


async def test_batches_errors_and_plain_methods(ledger: Running):
    assert ledger.server.url
    async with httpx.AsyncClient(base_url=ledger.server.url) as http:
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
            {"jsonrpc": "2.0", "id": 2, "method": "getVersion"},
            {"jsonrpc": "2.0", "id": 3, "method": "noSuchMethod"},
            {"jsonrpc": "2.0", "id": 4, "method": "getBalance", "params": ["not-a-key"]},
            {
                "jsonrpc": "2.0",
                "id": 5,
                "method": "getSlot",
                "params": [{"commitment": "processed"}],
            },
        ]
        answers = (await http.post("/", json=batch)).json()
        parse = (await http.post("/", content=b"{not json")).json()
        health = await http.get("/health")

    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]
    assert answers[0]["result"] == "ok"
    assert "solana-core" in answers[1]["result"]
    assert answers[2]["error"]["code"] == -32601
    assert answers[3]["error"]["code"] == -32602
    assert isinstance(answers[4]["result"], int)
    assert parse["error"]["code"] == -32700
    assert health.text == "ok"


async def test_a_taken_port_or_directory(ledger: Running, tmp_path: Path):
    assert ledger.server.url
    port = int(ledger.server.url.rsplit(":", 1)[1])
    elsewhere = Settings(_env_file=None, data_dir=tmp_path / "other", ledger_port=port)
    # Inside `refit run` a taken port is logged and the rest keeps running...
    await LedgerServer(elsewhere, optional=True).serve()
    # ... `refit ledger` alone fails.
    with pytest.raises(OSError):
        await LedgerServer(elsewhere).serve()
    # Two ledgers never share a journal.
    same_dir = ledger.settings.model_copy(update={"ledger_port": 0})
    with pytest.raises(RuntimeError, match="another ledger"):
        await LedgerServer(same_dir).serve()


async def test_one_finalized_view_and_a_node_that_has_not_reached_a_slot(ledger: Running):
    """getEpochInfo gives one bank's slot and block height together; an answer asked with a
    minContextSlot the node's view has not reached is refused (-32016), as a node does."""
    await ledger.chain.advance(40)
    info = (await ledger.rpc.get_epoch_info(Finalized)).value
    assert info.absolute_slot == info.block_height <= ledger.chain.height_at("finalized")
    reference = Pubkey.new_unique()
    reached = await ledger.rpc.get_signatures_for_address(
        reference, commitment=Finalized, min_context_slot=info.absolute_slot
    )
    assert reached.value == []
    with pytest.raises(RPCException) as refused:
        await ledger.rpc.get_signatures_for_address(
            reference, commitment=Finalized, min_context_slot=ledger.chain.slot + 1000
        )
    assert isinstance(refused.value.args[0], MinContextSlotNotReachedMessage)
