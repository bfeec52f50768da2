"""``GET /openapi.json``: the OpenAPI 3.0.3 document, generated with apispec from the
marshmallow schemas and the operations declared in :mod:`hexie.web.api.views`.

A client holding only this document can drive a case from start to close: every
path, parameter, request body and response (with its status codes and the error
schema) is in it, and each operation has a stable ``operationId`` (the view's name).
"""
from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Response, current_app, request

from .blueprint import bp
from .routing import ID_RANGES, OPERATIONS, Operation, json_response, operation
from .schemas import ErrorSchema

TITLE = "Hexie (和谐) API"
VERSION = "1.0.0"
_ERROR_TEXT = {400: "malformed request / 请求格式有误", 401: "no or bad token / 需要有效令牌",
               403: "forbidden / 无权操作", 404: "not found or not visible / 不存在或不可见",
               405: "method not allowed / 不支持此方法", 409: "conflict / 冲突",
               422: "not allowed now / 当前不能执行", 429: "too many attempts / 尝试次数过多"}


_PATH_EXAMPLES = {"process": "poor_mother_aid", "trigger": "approve"}
_PAGING_HEADERS = {name: {"description": text, "schema": {"type": "integer"}} for name, text in (
    ("X-Total-Count", "items in all pages"), ("X-Page", "this page (from 1)"),
    ("X-Per-Page", "items per page"), ("X-Pages", "number of pages"))}


def _schema_name(resolver_schema: Any) -> str:
    cls = resolver_schema if isinstance(resolver_schema, type) else type(resolver_schema)
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


def build_spec(server_url: str = "/api/v1") -> dict[str, Any]:
    """The whole document, for the API mounted at ``server_url``."""
    spec = APISpec(title=TITLE, version=VERSION, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
                   info={"description": "Hexie workflow and approval engine. 中文在前，English second. "
                                        "Errors are always {\"error\": {\"code\", \"message\", \"details\"}}."},
                   servers=[{"url": server_url}],
                   security=[{"bearer": []}])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "POST /token, then Authorization: Bearer TOKEN"})
    spec.components.schema("Error", schema=ErrorSchema)
    for status, text in _ERROR_TEXT.items():
        spec.components.response(f"Error{status}", {"description": text, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name, kind in op.path_params.items():
        schema = {"type": "integer", "minimum": 1, "maximum": ID_RANGES[kind]} if kind in ID_RANGES \
            else {"type": "string", "minLength": 1, "maxLength": 200}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema,
                           "example": _PATH_EXAMPLES.get(name, 1)})
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})  # apispec expands each field
    responses: dict[str, Any] = {}
    for status, (text, schema) in sorted(op.responses.items()):
        if schema is None and status >= 400:
            responses[str(status)] = f"Error{status}"
        elif schema is None:
            responses[str(status)] = {"description": text}
        else:
            responses[str(status)] = {"description": text, "content": {"application/json": {"schema": schema}}}
            if op.query is not None and status == 200 and "page" in op.query().fields:  # a paged list
                responses[str(status)]["headers"] = _PAGING_HEADERS
    automatic = [400] if (op.query or op.body or op.path_params) else []
    automatic += [401] if op.auth else []
    automatic += [404] if op.path_params else []
    for status in automatic:
        responses.setdefault(str(status), f"Error{status}")
    out: dict[str, Any] = {"operationId": op.endpoint, "summary": op.summary, "tags": [op.tag],
                           "parameters": parameters, "responses": responses}
    if op.description:
        out["description"] = op.description
    if not op.auth:
        out["security"] = []
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": {"application/json": {"schema": op.body}}}
    return out


def spec_for_app() -> dict[str, Any]:
    """The document for this app's mount point (cached per app and prefix)."""
    prefix = request.script_root + request.path[: -len("/openapi.json")]
    cache = current_app.extensions.setdefault("hexie_openapi", {})
    if prefix not in cache:
        cache[prefix] = build_spec(prefix or "/")
    return cache[prefix]


@operation(bp, "/openapi.json", "GET", summary="This document / 接口说明", tag="meta", auth=False,
           responses={200: ("the OpenAPI 3.0.3 document of this API", None)})
def openapi_json() -> Response:
    """The OpenAPI document of this API (no token needed)."""
    return json_response(spec_for_app())
