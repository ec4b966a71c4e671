"""The rules every route of the app follows: each API route sits under /api/v1 and authenticates
its caller, each operation has a short camelCase id in the OpenAPI document, and each GET route
answers HEAD as well."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from svc.api.deps import get_principal

API_PREFIX = "/api/v1"


def answer_head(router: APIRouter) -> None:
    """Register HEAD beside GET on every API route under `router` (RFC 9110 §9.1, §9.3.2).

    A HEAD runs the GET route, so its status and headers (Content-Length included) are the
    GET's; the server sends no body. A route that would hold the connection open (a stream, a
    long-poll) answers a HEAD at once: it looks at `request.method`.
    """
    for route in router.routes:
        if isinstance(route, APIRoute) and "GET" in route.methods:
            route.methods.add("HEAD")


def document_without_head(app: FastAPI) -> None:
    """Keep HEAD out of the OpenAPI document: it is implied by every GET, and documenting it
    would double the operations (under the same operation ids)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Duplicate Operation ID")  # GET and HEAD share one
                document = build()
            for operations in document["paths"].values():
                operations.pop("head", None)
        return app.openapi_schema

    app.openapi = openapi


def operation_ids() -> Callable[[APIRoute], str]:
    """A `generate_unique_id_function` for the service's routes (`operation_id`, one per process):
    the endpoint function's name in camelCase (`create_configuration` → `createConfiguration`).
    Where a router is mounted twice, the second route of a name is qualified by the first path
    segment in which it differs (`/me/claude-md` after `/users/{user_id}/claude-md`:
    `getClaudeMdForMe`)."""
    assigned: dict[tuple[str, frozenset[str]], str] = {}
    paths: dict[str, str] = {}  # operation id → the path of its route

    def generate(route: APIRoute) -> str:
        key = (route.path_format, frozenset(route.methods - {"HEAD"}))
        if key not in assigned:
            base = _camel(route.name)
            candidate = base
            if candidate in paths:
                candidate = base + _qualifier(route.path_format, paths[base])
            number = 2
            while candidate in paths:
                candidate, number = f"{base}{number}", number + 1
            assigned[key] = candidate
            paths[candidate] = route.path_format
        return assigned[key]

    return generate


def _camel(name: str) -> str:
    first, *rest = [word for word in re.split(r"[^A-Za-z0-9]+", name) if word]
    return first.lower() + "".join(word[:1].upper() + word[1:] for word in rest)


def _qualifier(path: str, other: str) -> str:
    for mine, theirs in zip(path.split("/"), other.split("/"), strict=False):
        if mine != theirs and not mine.startswith("{"):
            return "For" + _camel(mine)[:1].upper() + _camel(mine)[1:]
    return ""


# A route's operation id is made when the route is defined: once per process.
operation_id = operation_ids()


def api_router(prefix: str = "", **options: Any) -> APIRouter:
    """A router of the service's API: its routes under /api/v1 + `prefix`, each authenticating
    its caller. Each route is defined where it will be served: FastAPI works out an included
    router's routes a second time (~0.7 s of CPU at every worker's start)."""
    return APIRouter(
        prefix=API_PREFIX + prefix, dependencies=[Depends(get_principal)], generate_unique_id_function=operation_id,
        **options,
    )
