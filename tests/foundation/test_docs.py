"""The README's settings table and .env.example name every setting there is."""

from pathlib import Path

from refit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _names() -> list[str]:
    return [f"REFIT_{name.upper()}" for name in Settings.model_fields]


def test_every_setting_is_in_the_readme_table():
    table = {
        line.split("|")[1].strip().strip("`")
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `REFIT_")
    }
    assert set(_names()) == table


def test_every_setting_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    missing = [name for name in _names() if f"{name}=" not in example]
    assert missing == []
