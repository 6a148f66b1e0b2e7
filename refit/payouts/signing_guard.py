"""What must hold before any new signature for an order, the first or a re-sign: the chain's
finalized view shows no transfer carrying the order's reference, and the previous
transaction (if any) can no longer land.

Why finalized, and why one view: behind a load-balanced RPC, each call may reach another
node, and a node behind reads a landed transfer as absent. A transaction can only land in a
block at most at its last valid block height; once the finalized block height is past it,
every block it could be in is finalized, so a finalized lookup that covers that block is
complete. The lookup is asked with `minContextSlot` at the finalized slot just read, so a
node whose finalized view is older refuses (`ViewBehind`) instead of answering "none".

Only transactions the treasury signed count: the reference key is derived from the order's
id, which its seller knows, and anyone may send a transaction naming any key. A stranger's
(or the seller's own) transaction carrying it moves none of our SOL, and must not hold the
payout "already on chain" for an operator to untangle."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from solana.rpc.commitment import Finalized
from solders.pubkey import Pubkey

from refit.payouts import chain

if TYPE_CHECKING:
    from solana.rpc.async_api import AsyncClient


class Verdict(StrEnum):
    CLEAR = "clear"  # nothing for the order on chain, nothing can still land: sign
    WAIT = "wait"  # not provable yet: sign nothing, the next attempt asks again
    ON_CHAIN = "on_chain"  # a transfer carrying the reference landed: never sign another


@dataclass(frozen=True)
class Clearance:
    verdict: Verdict
    reason: str = ""
    found: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Previous:
    """The payout's stored transaction, the one a re-sign would replace."""

    signature: str
    last_valid_block_height: int


async def clear_to_sign(
    rpc: AsyncClient, reference: Pubkey, previous: Previous | None, treasury: Pubkey
) -> Clearance:
    """Whether a new transfer for the order may be signed now (see the module's docstring).
    Our own previous transaction found on chain is WAIT: it landed, and the status check
    will see it finalized; any other the treasury signed is ON_CHAIN."""
    view = await chain.finalized_view(rpc)
    if previous is not None and view.block_height <= previous.last_valid_block_height:
        return Clearance(
            Verdict.WAIT,
            f"{previous.signature} can still land: finalized block height {view.block_height}"
            f" <= its last valid {previous.last_valid_block_height}",
        )
    try:
        found = await chain.transfers_by_reference(
            rpc, reference, commitment=Finalized, min_context_slot=view.slot
        )
    except chain.ViewBehind as exc:
        return Clearance(Verdict.WAIT, f"the lookup's node is behind slot {view.slot}: {exc}")
    if previous is not None and previous.signature in found:
        return Clearance(Verdict.WAIT, f"{previous.signature} landed", found)
    ours = []
    for signature in found:
        landed = await chain.read_landed(rpc, signature)
        if landed is None:
            # Listed as finalized, yet this node has no record of it: decide nothing on it.
            return Clearance(Verdict.WAIT, f"{signature} is listed but not readable yet")
        if str(treasury) in landed.signers:
            ours.append(signature)
    if not ours:
        return Clearance(Verdict.CLEAR)
    return Clearance(Verdict.ON_CHAIN, "a transfer for the order is on chain", ours)
