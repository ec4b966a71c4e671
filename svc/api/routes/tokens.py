"""`/api/v1/tokens`: API tokens, for admins."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.json_body import JsonBodyRoute
from svc.api.problems import problem_responses
from svc.api.schemas import Page, Text
from svc.ids import ULID_PATTERN
from svc.services.tokens import Token

router = APIRouter(
    prefix="/tokens", tags=["tokens"], responses=problem_responses(401, 403, 422, 503), route_class=JsonBodyRoute
)


class TokenCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=256)
    role: Literal["admin", "service", "user"]
    user_id: str | None = Field(default=None, pattern=ULID_PATTERN)
    application_id: str | None = Field(default=None, pattern=ULID_PATTERN)
    read_only: bool = False


@dataclass(frozen=True)
class CreatedToken(Token):
    token: Annotated[str, Field(description="the secret; shown once, never stored")]


@router.post("", status_code=201, response_model=CreatedToken, responses=problem_responses(400, 413))
def create_token(body: Annotated[TokenCreate, Body()], principal: PrincipalDep, services: ServicesDep):
    created = services.tokens.create(principal, **body.model_dump())
    return CreatedToken(**asdict(created.token), token=created.secret)


@router.get("", response_model=Page[Token])
def list_tokens(principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None):
    return services.tokens.list(principal, limit=limit, after=after)


@router.delete("/{token_id}", response_model=Token, responses=problem_responses(404))
def revoke_token(token_id: IdPath, principal: PrincipalDep, services: ServicesDep):
    return services.tokens.revoke(principal, token_id)
