"""Errors in the OpenAI shape: every failed request answers `{"error": {"message", "type", "param", "code"}}`.

Handlers are installed for our own `APIError`, FastAPI's request validation errors (bad JSON, wrong types, unknown
fields: all 400) and Starlette's HTTP errors (404, 405 with the path's real `Allow`, ...). Anything unexpected is
answered by `CatchAll`, an ASGI middleware: a logged JSON 500 after which the connection stays usable (Starlette's
own handler for `Exception` answers and then re-raises, so uvicorn drops the keep-alive connection).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("cosmos3.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
          415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
          500: "server_error", 503: "service_unavailable"}

_CODES = {400: "invalid_value", 401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "request_too_large", 415: "unsupported_media_type", 429: "rate_limit_exceeded",
          500: "internal_error"}


def short(value, limit: int = 80) -> str:
    """repr() of a client-given value for an error message, cut to `limit` characters (a 100,000-character path is
    not echoed back whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...' ({len(str(value))} characters)"


def _printable(text: str | None) -> str | None:
    # lone surrogates cannot be encoded to UTF-8: escape them so the error body always renders
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(text, str) else text


class APIError(Exception):
    """An error answered to the client with `status` and the OpenAI error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        message, param = _printable(message), _printable(param)
        if isinstance(param, str) and len(param) > 200:
            param = param[:200]
        self.status, self.message, self.param = status, message, param
        self.code = code or _CODES.get(status)
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def from_value_error(exc: ValueError, default_param: str | None = None) -> APIError:
    """A library ValueError (SettingsError, MediaError, ActionError, ...) -> a 400 naming the field when known."""
    param = getattr(exc, "field", None) or default_param
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return APIError(400, message, param=param, code="invalid_value")


def _loc_to_param(loc: tuple) -> str | None:
    # drop the request part ("body", "query", ...) and pydantic's union-member tags ("str", "list[...]",
    # "function-after[...]"), so the param is the field's own path, e.g. "messages.0.content"
    parts: list[str] = []
    for p in loc:
        if p in ("body", "query", "path", "header", "form") or (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p)):
            continue
        if not parts or parts[-1] != str(p):  # a discriminated union repeats its tag: image_url.image_url
            parts.append(str(p))
    return ".".join(parts) or None


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "bytes", "literal"}


def pick_error(errors: list[dict]) -> dict:
    """The most telling of pydantic's errors: for a union (text or a list of parts) the member that failed on the
    value itself rather than on its type."""
    for err in errors:
        if not str(err.get("type", "")).endswith("_type"):
            return err
    return errors[0] if errors else {}


def error_message(err: dict, param: str | None) -> str:
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{param}: {message}" if param else message


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = pick_error(errors)
    kind = first.get("type", "")
    param = _loc_to_param(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        return APIError(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "),
                        code="invalid_json").response()
    if kind == "extra_forbidden":
        return APIError(400, f"unknown or unsupported field {short(param)}", param=param,
                        code="unknown_field").response()
    if kind == "missing":
        return APIError(400, f"missing required field {short(param)}", param=param,
                        code="missing_field").response()
    return APIError(400, error_message(first, param), param=param, code="invalid_value").response()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return _validation_response(exc)

    # The library's own input errors (a generation setting, a media file, an action array) describe the request,
    # whichever line raised them: a 400 naming the field, never the catch-all's 500. A plain ValueError stays a 500:
    # it may be a bug, and the log must show it.
    from ..actions import ActionError
    from ..media import MediaError
    from ..spec import SettingsError

    async def _input_error(request: Request, exc: ValueError):
        log.warning("input error outside a route's own checks on %s %s: %s", request.method, request.url.path, exc)
        return from_value_error(exc).response()

    for cls in (SettingsError, MediaError, ActionError):
        app.add_exception_handler(cls, _input_error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers or {})
        if message == "There was an error parsing the body":  # FastAPI's words for JSON it could not load
            message = "the request body could not be parsed as JSON (malformed, or nested too deeply)"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {short(request.url.path)}"
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {short(request.url.path)}; allowed: {', '.join(allowed)}"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, message, code=code, headers=headers).response()


def allowed_methods(app, scope) -> list[str]:
    """Every method some route answers on this path (Starlette's 405 names only the first matching route's)."""
    return [method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)]


class CatchAll:
    """Outermost ASGI middleware: an exception that escaped every handler is logged and answered as a JSON 500, and
    the connection stays open for the next request. (If the response had already started, nothing valid can be
    sent: the exception goes on to the server, which closes that connection.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            error = APIError(500, f"internal error ({type(exc).__name__}); the server keeps running",
                             code="internal_error")
            await error.response()(scope, receive, send)
