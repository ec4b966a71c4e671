"""`/api/v1/users` and `/api/v1/me`: the people who keep claude.md documents.

Admins create, list, change and delete users; a user token reads itself (and may
change its own display name).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import created, json_response, off_loop
from svc.api.schemas import EMAIL_PATTERN, Name, Text
from svc.services.users import User
from svc.services.pagination import Page

router = api_router(tags=["users"], responses=problem_responses(401, 403, 422, 503), route_class=JsonBodyRoute)

Email = Annotated[
    Text,
    Field(
        max_length=320,
        pattern=EMAIL_PATTERN,
        description="unique regardless of case",
        examples=["ada@example.com"],
    ),
]
Username = Name
DisplayName = Annotated[Text | None, Field(max_length=256)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    username: Username
    display_name: DisplayName = None


class UserUpdate(BaseModel):
    """Only the fields sent change; email and username cannot be null, display_name can."""

    model_config = ConfigDict(extra="forbid")
    email: Email = None
    username: Username = None
    display_name: DisplayName = None


@router.post("/users", status_code=201, response_model=User, responses=problem_responses(400, 409, 413))
async def create_user(
    body: Annotated[UserCreate, Body()], principal: PrincipalDep, services: ServicesDep, request: Request
) -> Response:
    user = await off_loop(lambda: services.users.create(principal, **body.model_dump()))
    return created(request, user, "get_user", user_id=user.id)


@router.get("/users", response_model=Page[User])
async def list_users(principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None) -> Response:
    return json_response(await off_loop(lambda: services.users.list(principal, limit=limit, after=after)))


@router.get("/users/{user_id}", response_model=User, responses=problem_responses(404))
async def get_user(user_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.users.get(principal, user_id)))


@router.patch("/users/{user_id}", response_model=User, responses=problem_responses(400, 404, 409, 413))
async def update_user(
    user_id: IdPath, body: Annotated[UserUpdate, Body()], principal: PrincipalDep, services: ServicesDep
) -> Response:
    fields = body.model_dump(exclude_unset=True)
    return json_response(await off_loop(lambda: services.users.update(principal, user_id, **fields)))


@router.delete("/users/{user_id}", status_code=204, responses=problem_responses(404))
async def delete_user(user_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    await off_loop(lambda: services.users.delete(principal, user_id))
    return Response(status_code=204)


@router.get("/me", response_model=User, responses=problem_responses(404))
async def get_me(principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.users.me(principal)))
