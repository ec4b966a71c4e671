"""How a route does blocking work and answers: one explicit hop to the thread pool for the
service call, the response built on the event loop with orjson straight from the typed rows.

A `def` endpoint with a `response_model` costs two hops in FastAPI 0.165 (the endpoint, then
the model's validation and serialisation) and a pydantic pass over every row; routes that use
these keep their `response_model` for the OpenAPI document only. orjson with `OPT_UTC_Z` writes
exactly the bytes pydantic would for these rows (tests/test_configurations.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from anyio.to_thread import run_sync
from fastapi import Request, Response

Result = TypeVar("Result")


async def off_loop(call: Callable[[], Result]) -> Result:
    """Run blocking work (a service call) in the thread pool: a request's one hop."""
    return await run_sync(call)


def render(value: Any) -> bytes:
    """JSON of a row (a dataclass) or a page of them, as the documented response model reads."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def json_response(value: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(render(value), status_code=status_code, headers=headers, media_type="application/json")


def created(
    request: Request, value: Any, route: str, *, headers: dict[str, str] | None = None, **path: str
) -> Response:
    """201 with the new resource and its `Location`: the URL of the route named `route` at `path`."""
    location = {"Location": str(request.url_for(route, **path))}
    return json_response(value, status_code=201, headers={**(headers or {}), **location})
