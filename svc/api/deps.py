"""FastAPI dependencies: the process's services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from starlette.applications import Starlette

from svc.api.schemas import NO_NUL_PATTERN
from svc.ids import ULID_ANY_CASE_PATTERN, canonical
from svc.services.auth import Principal
from svc.services.container import Services

bearer_scheme = HTTPBearer(auto_error=False, description="an API token: `svc token create` or POST /api/v1/tokens")


def services_of(app: Starlette) -> Services:
    """The process's services: the one way anything in the API reaches them."""
    return app.state.services


async def get_services(request: Request) -> Services:
    # async so FastAPI does not hop to a thread just to read an attribute
    return services_of(request.app)


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(request: Request, credentials: BearerCredentials) -> Principal:
    """Authenticate the bearer token of this request (401 when missing, unknown or revoked)."""
    services = services_of(request.app)
    return await services.authenticator.principal(credentials.credentials if credentials else None)


PrincipalDep = Annotated[Principal, Depends(get_principal)]

IdPath = Annotated[
    str,
    Path(pattern=ULID_ANY_CASE_PATTERN, description="a ULID, in either case", examples=["01JCZ5J7Q9T1V0G6W8E2X4Y6ZA"]),
    AfterValidator(canonical),
]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
After = Annotated[
    str | None, Query(max_length=64, pattern=NO_NUL_PATTERN, description="cursor: the `next` of the previous page")
]
