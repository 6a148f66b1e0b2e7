"""The OpenAPI document as a client generator reads it.

- Operation ids are `<tag>-<function name>` (as the full-stack FastAPI template does), so a
  generated client has methods like `orders-get_order`, stable across refactors of paths.
- Every error is `application/problem+json` (refit.errors): each documented 4xx/5xx answer
  gets the `Problem` schema instead of FastAPI's `HTTPValidationError` JSON, and every
  operation gets a `default` problem+json answer, because any endpoint can be refused by a
  limit (429), a body too large (413) or an outage (503) besides what it lists itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from refit.errors import PROBLEM_JSON

_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is stable, `detail` is for people.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "description": "Validation errors (422 validation_error, 400 malformed_json).",
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    # Some answers carry more (a payout's state, an import's problems): documented there.
    "additionalProperties": True,
}


def operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with the problem+json-truthful document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = problems_everywhere(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def problems_everywhere(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = PROBLEM_SCHEMA
    _hoist_defs(schema.get("paths", {}), components)
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status == "default" or status[0] in "45":
                    response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
            responses.setdefault(
                "default",
                {
                    "description": "Any other error (problem+json, see `code`)",
                    "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
                },
            )
    return schema


def _hoist_defs(node: Any, components: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for name, definition in node.pop("$defs", {}).items():
            if components.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas named {name} in the OpenAPI document")
            _hoist_defs(definition, components)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_defs(value, components)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, components)
