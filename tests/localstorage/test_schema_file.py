"""The schema file the web app validates its export against is the one we accept."""

from refit.localstorage.schemas import SCHEMA_FILE, json_schema_text
from refit.localstorage.validation import check_export
from tests.localstorage.helpers import EXAMPLE


def test_schema_file_is_generated_from_the_model():
    assert SCHEMA_FILE.read_text() == json_schema_text(), (
        "docs/localstorage-export.schema.json is stale: "
        "run .venv/bin/python -m refit.localstorage.schemas"
    )


def test_the_example_export_is_valid():
    checked = check_export(EXAMPLE.read_bytes(), source=EXAMPLE.name)
    assert checked.problems == []
    assert checked.document is not None
