"""How an API endpoint is declared: one decorator registers the Flask route and
records what the OpenAPI document says about it, so the two cannot drift apart.

Also the request plumbing every endpoint shares: JSON in (strictly parsed), JSON
out, the error body, Bearer authentication and the engine objects of the app.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable, Mapping

from flask import Blueprint, Response, g, request
from marshmallow import Schema, ValidationError

from hexie.workflows.errors import BadRequest, HexieError, not_found
from hexie.workflows.forms import WrittenFloat

from hexie.workflows.queries import MAX_ID

from .context import Unauthorized, hexie  # noqa: F401  (re-exported)

#: Path id kinds and their largest value: BIGINT ids (cases, tasks) and INTEGER ones (webhooks).
ID_RANGES = {"integer": MAX_ID, "int32": 2**31 - 1}

#: marshmallow's messages, with the Chinese first (every message is bilingual).
_ZH = {
    "Missing data for required field.": "必填",
    "Unknown field.": "未知字段",
    "Not a valid string.": "应为文本",
    "Not a valid integer.": "应为整数",
    "Not a valid boolean.": "应为是或否",
    "Not a valid mapping type.": "应为对象",
    "Not a valid list.": "应为列表",
    "Not a valid URL.": "网址无效",
    "Field may not be null.": "不能为空",
    "Not a valid number.": "应为数字",
    "Not a valid decimal.": "应为数字",
    "Number too large.": "数字过大",
    "Special numeric values (nan or infinity) are not permitted.": "不接受 NaN 或无穷大",
    "Not a valid date.": "日期无效（应为 YYYY-MM-DD）",
    "Not a valid datetime.": "日期时间无效（应为 ISO 8601，如 2026-03-02T09:00:00+08:00）",
    "Not a valid time.": "时间无效（应为 HH:MM）",
    "Not a valid email address.": "电子邮箱地址无效",
    "Not a valid tuple.": "应为列表",
    "Not a valid period of time.": "时长无效",
    "Invalid value.": "取值无效",
}
# Marshmallow's messages that carry their limits: the Chinese keeps the numbers.
_ZH_PATTERNS = (
    (re.compile(r"Length must be between (\d+) and (\d+)\."), "长度须在 {0} 到 {1} 个字符之间"),
    (re.compile(r"Length must be (\d+)\."), "长度须为 {0} 个字符"),
    (re.compile(r"Shorter than minimum length (\d+)\."), "至少 {0} 个字符"),
    (re.compile(r"Longer than maximum length (\d+)\."), "最多 {0} 个字符"),
    (re.compile(r"Must be greater than or equal to (\S+) and less than or equal to (\S+)\."), "须在 {0} 到 {1} 之间"),
    (re.compile(r"Must be greater than or equal to (\S+)\."), "须不小于 {0}"),
    (re.compile(r"Must be greater than (\S+)\."), "须大于 {0}"),
    (re.compile(r"Must be less than or equal to (\S+)\."), "须不大于 {0}"),
    (re.compile(r"Must be less than (\S+)\."), "须小于 {0}"),
    (re.compile(r"Must be one of: (.*)\."), "须为以下之一：{0}"),
)


def _zh_of(message: str) -> str:
    """The Chinese of one marshmallow message (its limits kept), or a plain "格式不正确"."""
    if message in _ZH:
        return _ZH[message]
    for pattern, zh in _ZH_PATTERNS:
        match = pattern.fullmatch(message)
        if match:
            return zh.format(*match.groups())
    return "格式不正确"


@dataclass
class Operation:
    """One endpoint, as both Flask and the OpenAPI document see it."""

    endpoint: str
    rule: str                 # Flask syntax: /cases/<case_id>
    method: str
    summary: str
    tag: str
    auth: bool = True
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    body_required: bool = False
    path_params: Mapping[str, str] = field(default_factory=dict)   # name -> "integer" | "int32" | "string"
    responses: Mapping[int, tuple[str, Any]] = field(default_factory=dict)  # status -> (text, schema)
    description: str = ""

    @property
    def path(self) -> str:
        """The OpenAPI path template: /cases/{case_id}."""
        return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.rule)


#: Every endpoint of the blueprint, in declaration order (read by openapi.py).
OPERATIONS: list[Operation] = []


# ------------------------------------------------------------------ answers
def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, default=str)
    return Response(body, status=status, headers=dict(headers or {}), mimetype="application/json")


def error_response(status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    """The one error body of the API: ``{"error": {"code", "message", "details"}}``."""
    return json_response({"error": {"code": code, "message": message, "details": dict(details or {})}},
                         status, headers)


def hexie_error_response(err: HexieError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="hexie"'} if err.status == 401 else \
        {"Retry-After": str(getattr(err, "retry_after", 60))} if err.status == 429 else None
    return error_response(err.status, err.code, err.message, _jsonable(err.details), headers)


def _jsonable(value: Any) -> Any:
    """Details as JSON can carry them (the engine may put ints, lists or tuples there)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ------------------------------------------------------------------- inputs
def _bilingual(messages: Any) -> Any:
    if isinstance(messages, Mapping):
        return {str(k): _bilingual(v) for k, v in messages.items()}
    if isinstance(messages, (list, tuple)):
        flat = [m for m in messages if isinstance(m, str)]
        if len(flat) == len(messages):
            return "; ".join(f"{_zh_of(m)} / {m}" for m in flat)
        return [_bilingual(m) for m in messages]
    return messages


def _no_nul(value: Any, where: str) -> None:
    """Refuse text the databases cannot store (NUL, lone surrogates) before it gets that far."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("文本不能包含 NUL 字符", "text may not contain NUL characters", {where: "NUL"})
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("文本编码无效", "text is not valid Unicode", {where: "invalid unicode"}) from None
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _no_nul(k, where)
            _no_nul(v, f"{where}.{k}" if isinstance(k, str) else where)
    elif isinstance(value, list):
        for v in value:
            _no_nul(v, where)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json_body() -> dict[str, Any]:
    """The request body as a JSON object; no body at all counts as ``{}``.

    The Content-Type is not insisted on (curl users forget it); the content is:
    anything but one JSON object is a 400.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        # a number with a fraction or exponent keeps how it was written: an amount sent as 1e5 is refused
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=WrittenFloat)
    except (ValueError, RecursionError):
        raise BadRequest("请求体不是有效的 JSON", "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("请求体应为 JSON 对象", "the body must be a JSON object") from None
    _no_nul(value, "body")
    return value


def load(schema: type[Schema], data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``data`` with ``schema``: wrong types and unknown fields are a 400 naming each field."""
    try:
        return schema().load(data)
    except ValidationError as err:
        raise BadRequest("请求格式有误", "the request is malformed",
                         _bilingual(err.messages if isinstance(err.messages, dict) else {"_": err.messages}))


def read_query(schema: type[Schema]) -> dict[str, Any]:
    args = {}
    for key, values in request.args.lists():
        if len(values) > 1:
            raise BadRequest("查询参数重复", f"query parameter {key!r} given more than once", {key: "repeated"})
        args[key] = values[0]
    _no_nul(args, "query")
    return load(schema, args)


def path_id(value: str, maximum: int = MAX_ID) -> int:
    """A numeric id from the path; anything else (or beyond the column's range) names nothing (404)."""
    # (length first: int() of thousands of digits is slow, and refused past 4300)
    if len(value) > 19 or not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
        raise not_found()   # the same answer as for an id that names nothing
    return int(value)


def path_text(value: str, name: str) -> str:
    _no_nul(value, name)
    if len(value) > 200:
        raise not_found()
    return value


# ------------------------------------------------------------- the decorator
def operation(bp: Blueprint, rule: str, method: str, *, summary: str, tag: str, auth: bool = True,
              query: type[Schema] | None = None, body: type[Schema] | None = None,
              body_required: bool = False, path_params: Mapping[str, str] | None = None,
              responses: Mapping[int, tuple[str, Any]], description: str = "") -> Callable:
    """Register a view on ``bp`` and describe it for OpenAPI.

    The view is called with the path parameters (ids already parsed), plus
    ``query=`` and ``body=`` (loaded by their schemas) when declared; ``g.actor`` is
    the authenticated caller when ``auth``.
    """
    params = dict(path_params or {})

    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        op = Operation(endpoint=view.__name__, rule=rule, method=method, summary=summary, tag=tag, auth=auth,
                       query=query, body=body, body_required=body_required, path_params=params,
                       responses=dict(responses), description=description or (view.__doc__ or "").strip())
        OPERATIONS.append(op)

        @wraps(view)
        def handle(**kwargs: str) -> Response:
            if auth:
                from .auth import authenticate_request
                g.actor = authenticate_request()
            args: dict[str, Any] = {}
            for name, kind in params.items():
                args[name] = path_id(kwargs[name], ID_RANGES[kind]) if kind in ID_RANGES \
                    else path_text(kwargs[name], name)
            if query is not None:
                args["query"] = read_query(query)
            elif request.args:
                raise BadRequest("不接受查询参数", "this endpoint takes no query parameters",
                                 {k: "unknown parameter" for k in request.args})
            if body is not None:
                # A missing body is an empty object: required fields then say what is missing.
                args["body"] = load(body, read_json_body())
            return view(**args)

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handle, methods=[method])
        return handle

    return register
