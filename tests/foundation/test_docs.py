"""The README's settings table and .env.example name every setting there is; ARCHITECTURE.md
names the file of every operator URL."""

import inspect
from pathlib import Path

from fastapi.routing import APIRoute

from refit.app import create_app
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


def _routes(routes, prefix: str = ""):  # type: ignore[no-untyped-def]
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes, prefix)
        elif isinstance(route, APIRoute):
            yield route


def test_architecture_names_the_file_of_every_operator_url():
    """A newcomer finds the file behind any /api/admin URL from ARCHITECTURE.md alone: its
    table has a row naming the route's file and the URL's last segment."""
    rows = [
        line
        for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines()
        if line.startswith("| `") and "refit/" in line
    ]
    unlisted = []
    for route in _routes(create_app().routes):
        if not route.path.startswith("/api/admin/"):
            continue
        module = inspect.getmodule(route.endpoint)
        assert module is not None
        file = module.__name__.replace(".", "/") + ".py"
        segments = route.path.removeprefix("/api/admin/").split("/")
        words = [segment for segment in segments if not segment.startswith("{")]
        # The URL's last word, and "/{" after it where a parameter ends the URL.
        needle = words[-1] + ("/{" if segments[-1].startswith("{") else "")
        if not any(f"`{file}`" in row and needle in row for row in rows):
            unlisted.append((sorted(route.methods), route.path, file))
    assert unlisted == []
