"""The claim that makes one process the owner of an embedded server (refit.embedded.claim):
one owner at a time, its published address read by the others, nothing else taken for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refit.embedded.claim import Claim


def test_one_owner_at_a_time_and_the_others_read_its_address(tmp_path: Path) -> None:
    owner, other = Claim(tmp_path / "redis.owner"), Claim(tmp_path / "redis.owner")
    assert owner.take()
    assert not other.take()
    assert other.read_owner() is None  # taken, not yet started: nothing to connect to
    owner.publish(url="unix:///tmp/redis.socket")
    assert other.read_owner() == {"pid": os.getpid(), "url": "unix:///tmp/redis.socket"}
    owner.release()
    assert other.take()  # the owner gone, the next process takes over
    other.release()


def test_a_dead_owners_claim_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "postgres.owner"
    # A process that took the claim, published, and was killed without letting go.
    script = (
        "import os, sys; from pathlib import Path; from refit.embedded.claim import Claim; "
        f"c = Claim(Path({str(path)!r})); assert c.take(); c.publish(url='postgresql://x'); "
        "os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    claim = Claim(path)
    assert claim.read_owner() is None  # its pid is gone
    assert claim.take()
    assert path.read_text() == ""  # what the dead owner wrote is no longer believed
    claim.release()


@pytest.mark.parametrize(
    "content", ["[1]", '{"pid": "x", "url": "u"}', '{"pid": 1}', "not json", '"text"']
)
def test_anything_but_an_owners_word_is_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "redis.owner"
    path.write_text(content)
    assert Claim(path).read_owner() is None


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text(json.dumps({"keep": True}))
    (tmp_path / "redis.owner").symlink_to(precious)
    with pytest.raises(OSError):
        Claim(tmp_path / "redis.owner").take()
    assert json.loads(precious.read_text()) == {"keep": True}
