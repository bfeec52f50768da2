"""The ``api`` blueprint: its error bodies, the JSON 404/405 under the prefix, starting webhooks."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.routing import Map, Rule

from hexie.models.db import database_unavailable
from hexie.workflows.errors import HexieError

from .routing import error_response, hexie_error_response

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

#: Every method a catch-all must answer (for a JSON 404 or 405 instead of the app's page).
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.errorhandler(HexieError)
def _engine_error(err: HexieError) -> Response:
    return hexie_error_response(err)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    status = err.code or 500
    code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "bad_request",
            422: "invalid"}.get(status, (err.name or "error").lower().replace(" ", "_"))
    headers = {k: v for k, v in err.get_headers() if k.lower() == "allow"}
    return error_response(status, code, f"{_ZH_STATUS.get(status, '请求错误')} / {err.name}", {}, headers)


#: How long a client should wait before trying again after a database blip (seconds).
RETRY_AFTER = "5"


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    if database_unavailable(err):
        log.warning("database unavailable on %s %s: %s", request.method, request.path, err)
        return error_response(503, "unavailable", "数据库暂时不可用，请稍后重试 / the database is briefly "
                              "unavailable; please try again", {}, {"Retry-After": RETRY_AFTER})
    log.exception("API error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "服务器内部错误 / internal server error")


_ZH_STATUS = {400: "请求格式有误", 401: "需要登录", 403: "无权操作", 404: "不存在", 405: "不支持此方法",
              409: "冲突", 413: "请求过大", 415: "请求格式有误", 422: "无法处理", 503: "暂时不可用"}


def _api_rules() -> Map:
    """The blueprint's own routes (without the catch-all), to tell 404 from 405 under the prefix."""
    cached = current_app.extensions.get("hexie_api_rules")
    if cached is None:
        cached = Map([Rule(r.rule, endpoint=r.endpoint, methods=r.methods)
                      for r in current_app.url_map.iter_rules()
                      if r.endpoint.startswith(f"{bp.name}.") and r.endpoint != f"{bp.name}.unknown_route"])
        current_app.extensions["hexie_api_rules"] = cached
    return cached


@bp.route("/", defaults={"path": ""}, methods=_ALL_METHODS, provide_automatic_options=False)
@bp.route("/<path:path>", methods=_ALL_METHODS, provide_automatic_options=False)
def unknown_route(path: str) -> Response:
    """Anything under the prefix that no endpoint serves: 405 for a known path, else 404."""
    adapter = _api_rules().bind("localhost", script_name=request.script_root or None)
    try:
        adapter.match(request.path[len(request.script_root):], method=request.method)
    except MethodNotAllowed as err:
        return error_response(405, "method_not_allowed", "不支持此方法 / method not allowed", {},
                              {"Allow": ", ".join(sorted(err.valid_methods or ()))})
    except RouteNotFound:
        pass
    return error_response(404, "not_found", "没有这个地址 / no such API endpoint", {"path": request.path})


@bp.record_once
def _start_webhooks(setup) -> None:
    """Deliver webhooks from this process once the API is mounted (``HEXIE_WEBHOOKS = False``: don't).

    The dispatcher only subscribes to the engine's events; its threads start with the
    first delivery. Deliveries left pending are retried by ``deliver_pending`` (the worker).
    """
    app = setup.app
    state = app.extensions.get("hexie")
    if state is None or not app.config.get("HEXIE_WEBHOOKS", True):
        return
    from hexie.workflows.webhooks import ensure_dispatcher
    ensure_dispatcher(state["engine"])
