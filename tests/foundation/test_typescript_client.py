"""The contract as the web app consumes it: the OpenAPI document in clients/typescript is the
app's own, the typed TypeScript client is generated from it, and it type-checks. When the API
changes, `make client` regenerates both; this test fails until it has been run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from refit.app import create_app
from refit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
STALE = "the TypeScript client is stale: run `make client` and commit clients/typescript"


def test_the_committed_openapi_document_is_the_apps():
    document = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    committed = json.loads((CLIENT / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(document)), STALE


def test_every_error_is_problem_json_and_every_operation_has_an_id():
    document = json.loads((CLIENT / "openapi.json").read_text())
    ids = []
    for path_item in document["paths"].values():
        for operation in path_item.values():
            ids.append(operation["operationId"])
            responses = operation["responses"]
            assert "default" in responses
            for status, answer in responses.items():
                if status == "default" or status[0] in "45":
                    assert list(answer["content"]) == ["application/problem+json"], status
    assert len(ids) == len(set(ids))
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("npm") is None, reason="needs Node.js and npm")
def test_the_client_is_generated_from_it_and_type_checks(tmp_path):
    work = tmp_path / "client"
    shutil.copytree(CLIENT, work, ignore=shutil.ignore_patterns("node_modules"))

    def npm(*args: str) -> None:
        done = subprocess.run(["npm", *args], cwd=work, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    npm("ci", "--no-audit", "--no-fund", "--prefer-offline")
    (work / "src" / "schema.d.ts").unlink()
    npm("run", "generate")
    assert (work / "src" / "schema.d.ts").read_text() == (
        CLIENT / "src" / "schema.d.ts"
    ).read_text(), STALE
    npm("run", "typecheck")
