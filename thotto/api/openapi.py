"""The OpenAPI 3.1 document, generated from the endpoint table and the msgspec body types.

``GET /openapi.json`` serves it; ``thotto openapi`` prints it (docs/api.md is generated from it).
Everything in it comes from the endpoint table (:func:`thotto.api.routes.all_endpoints`, which
the served app keeps as ``app.state.endpoints``): paths, methods, bodies,
responses, query parameters, auth and error statuses, so it is true to what the API does.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from thotto import __version__
from thotto.api.endpoints import SUMMARY, Endpoint, EndpointGroup, json_response
from thotto.scheduler.records import ApiBody, ErrorBody

ENDPOINTS = EndpointGroup()
REF = "#/components/schemas/{name}"


def document(all_endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    endpoints = [e for e in all_endpoints if e.method != "HEAD"]
    types = _types(endpoints)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    _clean_descriptions(components)
    schema_of = dict(zip(types, schemas))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schema_of)
    return _ecma_patterns({
        "openapi": "3.1.0",
        "info": {"title": "Thotto", "version": __version__,
                 "description": "Schedule Reddit posts; each publishes at its time, exactly once."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API token: `thotto token create`"}},
        },
    })


def _ecma_patterns(node: Any) -> Any:
    """Patterns as JSON Schema spells them. The types end theirs with ``\\Z`` because Python's
    ``$`` also matches before a final newline (so ``"name\\n"`` would pass); JSON Schema
    patterns are ECMA-262, where ``$`` is already the end of the input and ``\\Z`` means "Z"."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str) and value.endswith("\\Z"):
                node[key] = value[:-2] + "$"
            else:
                _ecma_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _ecma_patterns(value)
    return node


def _clean_descriptions(node: Any) -> None:
    """Dedent every docstring-born description in place.

    msgspec copies docstrings as Python keeps them, and Python 3.13 and msgspec 0.23 changed how
    much indentation that is; cleandoc makes the document the same whichever versions are installed.
    """
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            node["description"] = inspect.cleandoc(node["description"])
        for value in node.values():
            _clean_descriptions(value)
    elif isinstance(node, list):
        for value in node:
            _clean_descriptions(value)


def _types(endpoints: list[Endpoint]) -> list[Any]:
    found: list[Any] = [ErrorBody]
    for endpoint in endpoints:
        for type_ in (endpoint.body, endpoint.response, endpoint.query, *(t for _, t, _ in endpoint.also)):
            if type_ is not None and type_ not in found:
                found.append(type_)
    return found


def _operation(endpoint: Endpoint, schema_of: dict[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": endpoint.handler.__name__,
        "tags": list(endpoint.tags),
        "responses": {str(endpoint.status): _content(endpoint, schema_of.get(endpoint.response))},
    }
    for status, type_, description in endpoint.also:
        operation["responses"][str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": schema_of[type_]}}}
    for status in endpoint.errors:
        operation["responses"][str(status)] = {
            "description": SUMMARY.get(status, "Error"),
            "content": {"application/json": {"schema": schema_of[ErrorBody]}}}
    if endpoint.auth:
        operation["security"] = [{"bearer": []}]
    parameters = _path_parameters(endpoint.path) + _query_parameters(endpoint.query, schema_of)
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": schema_of[endpoint.body]}}}
    elif endpoint.body_content is not None:
        operation["requestBody"] = {"required": True, "content": endpoint.body_content}
    return operation


def _content(endpoint: Endpoint, schema: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": endpoint.summary}
    if endpoint.response_content is not None:
        response["content"] = endpoint.response_content
    elif schema is not None:
        response["content"] = {endpoint.content_type: {"schema": schema}}
    return response


# Path parameters named ``id`` are row ids (see thotto.api.endpoints.path_id); others are names.
_PATH_SCHEMAS = {"id": {"type": "integer", "minimum": 1}}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True,
             "schema": _PATH_SCHEMAS.get(name, {"type": "string", "minLength": 1})}
            for name in re.findall(r"{(\w+)}", path)]


def _query_parameters(query: Any, schema_of: dict[Any, Any]) -> list[dict[str, Any]]:
    if query is None:
        return []
    _, components = msgspec.json.schema_components([query], ref_template=REF)
    _clean_descriptions(components)
    struct = components[query.__name__]
    return [{"name": name, "in": "query", "required": name in struct.get("required", []), "schema": schema}
            for name, schema in struct["properties"].items()]


def markdown(endpoints: tuple[Endpoint, ...]) -> str:
    """The API reference for docs/api.md, generated from the same document."""
    doc = document(endpoints)
    lines = ["# Thotto HTTP API", "",
             f"Generated from the OpenAPI {doc['openapi']} document (`GET /openapi.json`, or "
             "`thotto openapi`) by `thotto openapi --markdown`. Bodies are JSON in camelCase; unknown "
             "fields are refused. Errors are `{\"error\", \"detail\", \"field\"}` with the status "
             "listed. Authenticate with `Authorization: Bearer <token>`.", ""]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            lines += _markdown_operation(method, path, operation)
    lines += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        lines += [f"### {name}", "", "```json", msgspec.json.format(msgspec.json.encode(schema), indent=2).decode(),
                  "```", ""]
    return "\n".join(lines)


def _markdown_operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    auth = "bearer token" if operation.get("security") else "none"
    lines = [f"## `{method.upper()} {path}`", "", operation["summary"] + ".", "", f"- Auth: {auth}"]
    body_content = operation.get("requestBody", {}).get("content", {})
    body = body_content.get("application/json", {}).get("schema")
    if body:
        lines.append(f"- Body: {_schema_name(body)}")
    elif body_content:
        lines.append(f"- Body: {', '.join(f'`{kind}`' for kind in body_content)}")
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            lines.append(f"- Query `{parameter['name']}`: {_schema_name(parameter['schema'])}")
    for status, response in operation["responses"].items():
        content = response.get("content", {})
        schema = content.get("application/json", {}).get("schema")
        shown = _schema_name(schema) if schema else ", ".join(f"`{kind}`" for kind in content)
        lines.append(f"- {status}: {response['description']}" + (f" ({shown})" if shown else ""))
    return lines + [""]


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema['items'])}"
    if "anyOf" in schema:
        return " or ".join(_schema_name(option) for option in schema["anyOf"])
    return f"`{schema.get('type', 'any')}`"


def encoded_document(endpoints: tuple[Endpoint, ...]) -> bytes:
    return msgspec.json.encode(document(endpoints))


@ENDPOINTS.add("GET", "/openapi.json", "This document", auth=None, tags=("meta",))
async def openapi_json(request: Request) -> Response:
    state = request.app.state
    if state.openapi is None:  # made on the first request, then kept with the app
        state.openapi = encoded_document(state.endpoints)
    return Response(state.openapi, media_type="application/json")


class Liveness(ApiBody):
    status: str
    version: str


@ENDPOINTS.add("GET", "/api/health", "Liveness: the process serves requests (no auth)",
               response=Liveness, auth=None, tags=("meta",))
async def health(request: Request) -> Response:
    return json_response(Liveness(status="ok", version=__version__))
