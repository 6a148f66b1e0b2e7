"""What the hostile-input tests walk: the API's operations from its own OpenAPI document (a
body per string field, built from the schema) and the dashboard's forms as its pages render
them (parsed from the HTML, as a browser would fill them)."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount

Path = tuple[str | int, ...]


# --- the API's document ----------------------------------------------------------------


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) of every operation in the document."""
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method.upper(), path, operation


def json_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = (operation.get("requestBody") or {}).get("content") or {}
    found = content.get("application/json")
    return None if found is None else found.get("schema", {})


def _resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"].get(name) or schema.get("$defs", {})[name]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if _resolved(doc, o).get("type") != "null"]
            return _resolved(doc, options[0]) if options else {"type": "null"}
    return schema


def example(doc: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for `schema`: every property present, one item per array."""
    schema = _resolved(doc, schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 6:
            return {}
        return {
            name: example(doc, sub, depth + 1)
            for name, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        return [example(doc, schema.get("items", {}), depth + 1)] if depth <= 6 else []
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    return "text"


def string_paths(doc: dict[str, Any], value: Any, schema: dict[str, Any]) -> Iterator[Path]:
    """Where `value` (an `example` of `schema`) holds free text: every string that is not
    one of an enum's values."""
    schema = _resolved(doc, schema)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, sub in value.items():
            for rest in string_paths(doc, sub, properties.get(name, {})):
                yield (name, *rest)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            for rest in string_paths(doc, sub, schema.get("items", {})):
                yield (i, *rest)
    elif isinstance(value, str) and "enum" not in schema and "const" not in schema:
        yield ()


def with_value(body: Any, path: Path, value: Any) -> Any:
    changed = copy.deepcopy(body)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def concrete(path: str, value: str | None = None) -> str:
    """The template with each parameter filled: `value`, or a fresh UUID."""
    return re.sub(r"\{[^}]+\}", lambda _m: value or str(uuid.uuid4()), path)


# --- the dashboard's pages -------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    enctype: str
    # (name, kind): kind is the input's type, "textarea" or "select".
    fields: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)


class Page(HTMLParser):
    """The forms and same-app links of one rendered page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._open: Form | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href", "").startswith("/admin"):
            self.links.append(a["href"])
        elif tag == "form":
            self._open = Form(
                action=a.get("action", ""),
                method=a.get("method", "get").upper(),
                enctype=a.get("enctype", "application/x-www-form-urlencoded"),
            )
            self.forms.append(self._open)
        elif self._open is not None and tag in {"input", "textarea", "select"} and a.get("name"):
            kind = a.get("type", "text") if tag == "input" else tag
            self._open.fields.append((a["name"], kind))
            self._open.values[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def mounted(app: FastAPI, prefix: str) -> FastAPI:
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == prefix)
    assert isinstance(mount.app, FastAPI)
    return mount.app


def route_of(templates: list[str], path: str) -> str | None:
    """The template of `templates` that `path` (without its query) fills."""
    path = path.split("?", 1)[0]
    for template in templates:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return template
    return None
