"""Every error leaves as application/problem+json (RFC 9457); this is the one place that maps them."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from svc import errors
from svc.api.validation_words import in_words
from svc.api.json_body import is_json_media_type, media_type_of, takes_json_body
from svc.log import request_id_var
from svc.services.auth import TOKEN_PREFIX

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Shaped like an API token: a client that puts its secret in a URL (DELETE /tokens/<secret>
# instead of the id) must not find it echoed in an error or written to the access log.
_TOKEN_SHAPED = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")

STATUS_OF: dict[type[errors.ServiceError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unprocessable: 422,
    errors.Unavailable: 503,
    errors.BadGateway: 502,
}


class Problem(BaseModel):
    """RFC 9457 problem details, with the request id and, for 422, the violations."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str
    errors: list[dict[str, Any]] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting the given error statuses as problem+json.

    Without a `model`: FastAPI would build a pydantic field for each (route, status), about 860,
    in every process that serves the routes, for the OpenAPI document alone. The document gets
    Problem's schema once, from `_document_problems`."""
    return {status: _documented(status) for status in statuses}


def _documented(status: int) -> dict[str, Any]:
    """A problem+json response as the OpenAPI document shows it."""
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def redact_secrets(text: str) -> str:
    """`text` with anything shaped like an API token replaced."""
    return _TOKEN_SHAPED.sub(TOKEN_PREFIX + "[redacted]", text)


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors_: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; usable outside a route (middleware) as well as inside."""
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=redact_secrets(detail),
        instance=instance and redact_secrets(instance),
        request_id=request_id_var.get(),
        errors=errors_,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    errors_: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return problem_response(status, detail, instance=request.url.path, errors_=errors_, headers=headers)


async def _service_error(request: Request, exc: errors.ServiceError) -> JSONResponse:
    status = next((code for cls, code in STATUS_OF.items() if isinstance(exc, cls)), 500)
    if status == 503:
        log.warning("unavailable: %s", exc.detail)
    return problem(request, status, exc.detail, errors_=exc.errors, headers=_headers_for(request, exc))


def _headers_for(request: Request, exc: errors.ServiceError) -> dict[str, str] | None:
    """RFC 6750 §3.1: a challenge on every 401, with `invalid_token` when a token was sent but is
    no good (none when the request carried no bearer token). RFC 5789 §2.2: a 415 to a PATCH
    names the patch formats accepted. RFC 9110 §10.2.3: a 503 says when to try again, where that helps."""
    if isinstance(exc, errors.Unavailable):
        return None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, errors.InvalidToken):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.UnsupportedMediaType):
        return _accept_patch(request, exc.accepted)
    return None


def _accept_patch(request: Request, accepted: tuple[str, ...]) -> dict[str, str] | None:
    return {"Accept-Patch": ", ".join(accepted)} if request.method == "PATCH" and accepted else None


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    violations = [
        {"loc": list(e.get("loc", ())), "msg": in_words(e), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    if any(v["type"] == "json_invalid" for v in violations):
        return problem(request, 400, "the request body is not valid JSON", errors_=violations)
    wrong_type = _not_json(request) if any(v["loc"][:1] == ["body"] for v in violations) else None
    if wrong_type is not None:
        detail = f"the request body must be application/json, not {wrong_type}"
        return problem(request, 415, detail, headers=_accept_patch(request, ("application/json",)))
    summary = "; ".join(f"{'.'.join(str(p) for p in v['loc'])}: {v['msg']}" for v in violations[:5])
    return problem(request, 422, f"invalid request: {summary}", errors_=violations)


def _not_json(request: Request) -> str | None:
    """The media type of a body sent to a JSON route as something else (FastAPI does not parse
    it, and would report the body as missing or not an object: a 422 that hides the cause)."""
    if not takes_json_body(request.scope.get("route")):
        return None
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return None  # no body at all: the 422 names the missing field
    media_type = media_type_of(request.headers.get("content-type"))
    if is_json_media_type(media_type):
        return None
    return what_was_sent(media_type)


def what_was_sent(media_type: str) -> str:
    """The body's media type as a 415 names it. `curl -d` labels JSON a form unless told otherwise:
    naming that type would point at something the user never chose."""
    if not media_type:
        return "a body without Content-Type"
    if media_type == "application/x-www-form-urlencoded":
        return "a body without a JSON Content-Type (curl -d needs -H 'Content-Type: application/json')"
    return media_type


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = getattr(exc, "headers", None)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        headers = {**(headers or {}), "Allow": allowed}
    return problem(request, exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method served at this path. Starlette's own `Allow` names only the methods of the
    first route whose path matches, so `GET /tokens` was missing from a 405 to `PUT /tokens`."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        path_regex = getattr(route, "path_regex", None)
        if path_regex is not None and path_regex.match(request.url.path):
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return problem(request, 500, "internal error; the request id identifies it in the service log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Registered by class (not only as the catch-all) so it answers without re-raising to the server.
    app.add_exception_handler(errors.InternalError, _unexpected)
    app.add_exception_handler(Exception, _unexpected)
    _document_problems(app)


def _document_problems(app: FastAPI) -> None:
    """What the OpenAPI document FastAPI builds lacks: the Problem schema that every documented
    error refers to (`problem_responses`), and the 415 that every route taking a JSON body can
    answer (from `_not_json` above), documented here where it is made."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for operations in document["paths"].values():
                for operation in operations.values():
                    if "application/json" in operation.get("requestBody", {}).get("content", {}):
                        operation["responses"].setdefault("415", _documented(415))
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(mode="serialization")
            document["components"]["schemas"] = dict(sorted(schemas.items()))  # in FastAPI's order
        return app.openapi_schema

    app.openapi = openapi
