"""`/api/v1/teams` and `/api/v1/me/teams`: teams and their members (the team's claude.md is
mounted by the documents router)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import created, json_response, off_loop
from svc.api.schemas import NAME_DESCRIPTION, NAME_PATTERN, Text
from svc.services.teams import Member, Team
from svc.services.pagination import Page

router = api_router(tags=["teams"], responses=problem_responses(401, 403, 404, 422, 503), route_class=JsonBodyRoute)

Name = Annotated[str, Field(pattern=NAME_PATTERN, description=NAME_DESCRIPTION)]
DisplayName = Annotated[Text | None, Field(max_length=256)]
Description = Annotated[Text | None, Field(max_length=1024)]
Role = Literal["owner", "admin", "member"]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    display_name: DisplayName = None
    description: Description = None
    owner_id: str | None = Field(
        default=None, description="admin tokens only: the first owner (a user token makes its user the owner)"
    )


class TeamUpdate(BaseModel):
    """Only the fields sent change; `name` cannot be null."""

    model_config = ConfigDict(extra="forbid")
    name: Name = None
    display_name: DisplayName = None
    description: Description = None


class MemberPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


@router.post("/teams", status_code=201, response_model=Team, responses=problem_responses(400, 409, 413))
async def create_team(
    body: Annotated[TeamCreate, Body()], principal: PrincipalDep, services: ServicesDep, request: Request
) -> Response:
    """Create a team; the caller (or, for an admin, `owner_id`) becomes its owner."""
    team = await off_loop(lambda: services.teams.create(principal, **body.model_dump()))
    return created(request, team, "get_team", team_id=team.id)


@router.get("/teams", response_model=Page[Team])
async def list_teams(principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None) -> Response:
    """Admins see every team; a user sees the teams it belongs to."""
    return json_response(await off_loop(lambda: services.teams.list(principal, limit=limit, after=after)))


@router.get("/me/teams", response_model=Page[Team])
async def list_my_teams(
    principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None
) -> Response:
    """The teams the calling user belongs to."""
    return json_response(await off_loop(lambda: services.teams.list(principal, limit=limit, after=after, mine=True)))


@router.get("/teams/{team_id}", response_model=Team)
async def get_team(team_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.teams.get(principal, team_id)))


@router.patch("/teams/{team_id}", response_model=Team, responses=problem_responses(400, 409, 413))
async def update_team(
    team_id: IdPath, body: Annotated[TeamUpdate, Body()], principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Rename or describe a team (owners)."""
    fields = body.model_dump(include=body.model_fields_set)
    return json_response(await off_loop(lambda: services.teams.update(principal, team_id, fields)))


@router.delete("/teams/{team_id}", status_code=204)
async def delete_team(team_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Delete a team (owners). Its documents' git history stays under refs/deleted/<document id>."""
    await off_loop(lambda: services.teams.delete(principal, team_id))
    return Response(status_code=204)


@router.get("/teams/{team_id}/members", response_model=Page[Member])
async def list_members(
    team_id: IdPath, principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None
) -> Response:
    return json_response(await off_loop(lambda: services.teams.members(principal, team_id, limit=limit, after=after)))


@router.put("/teams/{team_id}/members/{user_id}", response_model=Member, responses=problem_responses(400, 409, 413))
async def put_member(
    team_id: IdPath, user_id: IdPath, body: Annotated[MemberPut, Body()], principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """Add a member or change its role; 409 when that would leave the team without an owner."""
    return json_response(
        await off_loop(lambda: services.teams.put_member(principal, team_id, user_id, role=body.role))
    )


@router.delete("/teams/{team_id}/members/{user_id}", status_code=204, responses=problem_responses(409))
async def remove_member(team_id: IdPath, user_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Remove a member; 409 for the last owner."""
    await off_loop(lambda: services.teams.remove_member(principal, team_id, user_id))
    return Response(status_code=204)
