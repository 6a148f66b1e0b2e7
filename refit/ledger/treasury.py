"""The treasury keypair: REFIT_TREASURY_KEYPAIR, or in development one generated under the
data directory (and funded by the local ledger). Never logged: only its public key is."""

from __future__ import annotations

import json
import os
from pathlib import Path

from solders.keypair import Keypair

from refit.settings import Settings

DEV_TREASURY_FILE = "treasury.json"


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
