"""The treasury keypair: REFIT_TREASURY_KEYPAIR, or in development one generated under the
data directory (and funded by the local ledger). Never logged: only its public key is.

Only the worker signs, so only the worker loads the keypair (`load_treasury`, checked against
REFIT_TREASURY_PUBKEY at its start). The API and the dashboard know the treasury by its public
key alone (`treasury_pubkey`): a process that serves requests never opens the secret."""

from __future__ import annotations

import json
import os
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from refit.settings import Settings

DEV_TREASURY_FILE = "treasury.json"


class TreasuryRefused(Exception):
    """The treasury's settings cannot work: said in one line (refit.cli_failures), never with
    the keypair's bytes."""


def _keypair_from_json(text: str) -> Keypair:
    numbers = json.loads(text)
    if not isinstance(numbers, list) or len(numbers) != 64:
        raise ValueError("a keypair is a JSON array of 64 numbers")
    return Keypair.from_bytes(bytes(numbers))


def load_or_create_keypair(path: Path) -> Keypair:
    """The keypair in `path` (the Solana CLI's format: a JSON array of 64 numbers), created
    readable by its owner only when there is none."""
    try:
        return _keypair_from_json(path.read_text())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    keypair = Keypair()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(list(bytes(keypair)), f)
        f.flush()
        os.fsync(f.fileno())
    # Two processes starting at once: the first file wins, both use it.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _keypair_from_json(path.read_text())


def load_treasury(settings: Settings) -> Keypair:
    """REFIT_TREASURY_KEYPAIR (a file path or the JSON array itself); unset, the development
    keypair under data_dir (production refuses to start without the setting)."""
    if settings.treasury_keypair is None:
        return load_or_create_keypair(settings.data_dir / DEV_TREASURY_FILE)
    value = settings.treasury_keypair.get_secret_value().strip()
    try:
        if value.startswith("["):
            return _keypair_from_json(value)
        return _keypair_from_json(Path(value).expanduser().read_text())
    except (OSError, ValueError):
        # Not the exception's text: it may quote the secret.
        raise ValueError("REFIT_TREASURY_KEYPAIR is neither a keypair file nor a keypair") from None


def treasury_pubkey(settings: Settings) -> Pubkey:
    """The treasury's public key, for the processes that never sign: REFIT_TREASURY_PUBKEY;
    unset outside production with no REFIT_TREASURY_KEYPAIR either, the development keypair's
    (generated under data_dir by whichever process needs it first: `refit run` exports its
    public key to its children). A configured keypair is never opened here."""
    if settings.treasury_pubkey is not None:
        return Pubkey.from_string(settings.treasury_pubkey)
    if settings.treasury_keypair is None and not settings.is_production:
        return load_or_create_keypair(settings.data_dir / DEV_TREASURY_FILE).pubkey()
    raise TreasuryRefused(
        "REFIT_TREASURY_PUBKEY must be set beside REFIT_TREASURY_KEYPAIR: the API and the "
        "dashboard know the treasury by its public key only"
    )


def worker_treasury(settings: Settings) -> Keypair:
    """The keypair the worker signs with, refused (one line, no secret) when it cannot be read
    or is not the treasury REFIT_TREASURY_PUBKEY names: the worker would otherwise sign from
    another wallet than the one the API asks payouts from."""
    if settings.is_production and settings.treasury_keypair is None:
        raise TreasuryRefused("REFIT_TREASURY_KEYPAIR must be set for the worker in production")
    try:
        keypair = load_treasury(settings)
    except ValueError as exc:
        raise TreasuryRefused(str(exc)) from None
    except OSError as exc:  # the development keypair's file, unreadable
        raise TreasuryRefused(f"the treasury keypair cannot be read ({exc.strerror})") from None
    expected = settings.treasury_pubkey
    if expected is not None and str(keypair.pubkey()) != expected:
        raise TreasuryRefused(
            f"REFIT_TREASURY_KEYPAIR is the key of {keypair.pubkey()}, not of "
            f"REFIT_TREASURY_PUBKEY={expected}: the worker signs for no other treasury"
        )
    return keypair
