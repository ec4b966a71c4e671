"""`/api/v1/tokens`: API tokens, for admins."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from fastapi import Body, Response
from pydantic import BaseModel, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import json_response, off_loop
from svc.api.schemas import Text
from svc.ids import ULID_PATTERN
from svc.services.tokens import Token
from svc.services.pagination import Page

router = api_router(
    prefix="/tokens", tags=["tokens"], responses=problem_responses(401, 403, 422, 503), route_class=JsonBodyRoute
)


class TokenCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=256)
    role: Literal["admin", "service", "user"]
    user_id: str | None = Field(default=None, pattern=ULID_PATTERN)
    application_id: str | None = Field(default=None, pattern=ULID_PATTERN)
    read_only: bool = False
    reveal_secrets: bool = Field(
        default=False,
        description="service tokens only: read secret values in clear from GET and resolve "
        "(a scoped token only in its application)",
    )


@dataclass(frozen=True)
class CreatedToken(Token):
    token: Annotated[str, Field(description="the secret; shown once, never stored")]


@router.post("", status_code=201, response_model=CreatedToken, responses=problem_responses(400, 413))
async def create_token(body: Annotated[TokenCreate, Body()], principal: PrincipalDep, services: ServicesDep) -> Response:
    created = await off_loop(lambda: services.tokens.create(principal, **body.model_dump()))
    return json_response(CreatedToken(**asdict(created.token), token=created.secret), status_code=201)


@router.get("", response_model=Page[Token])
async def list_tokens(principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None) -> Response:
    return json_response(await off_loop(lambda: services.tokens.list(principal, limit=limit, after=after)))


@router.delete("/{token_id}", response_model=Token, responses=problem_responses(404))
async def revoke_token(token_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.tokens.revoke(principal, token_id)))
