"""`/api/v1/applications`: the applications that own configurations (admin and service tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import created, json_response, off_loop
from svc.api.schemas import NO_NUL_PATTERN, Comments, Name, Text
from svc.ids import ULID_PATTERN
from svc.services.applications import Application
from svc.services.pagination import Page

router = api_router(
    prefix="/applications",
    tags=["applications"],
    responses=problem_responses(401, 403, 422, 503),
    route_class=JsonBodyRoute,
)


TeamId = Annotated[
    str | None,
    Field(pattern=ULID_PATTERN, description="the team it belongs to: its members read it, its owners and admins write it"),
]


Description = Annotated[Text | None, Field(max_length=4096, description="what the application (the product) is")]
Icon = Annotated[
    Text | None, Field(min_length=1, max_length=16, description="a short string shown beside the name, such as an emoji")
]
Color = Annotated[
    str | None,
    Field(pattern=r"^#[0-9A-Fa-f]{6}$", description="#rrggbb (stored in lower case)"),
    AfterValidator(lambda color: None if color is None else color.lower()),
]


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    comments: Comments = None
    team_id: TeamId = None
    description: Description = None
    icon: Icon = None
    color: Color = None


class ApplicationUpdate(BaseModel):
    """Only the fields sent change; `name` cannot be null."""

    model_config = ConfigDict(extra="forbid")
    name: Name = None
    comments: Comments = None
    team_id: TeamId = None
    description: Description = None
    icon: Icon = None
    color: Color = None


@router.post("", status_code=201, response_model=Application, responses=problem_responses(400, 409, 413))
async def create_application(
    body: Annotated[ApplicationCreate, Body()], principal: PrincipalDep, services: ServicesDep, request: Request
) -> Response:
    application = await off_loop(lambda: services.applications.create(
        principal, **body.model_dump()
    ))
    return created(request, application, "get_application", application_id=application.id)


@router.get("", response_model=Page[Application], summary="Applications by id")
async def list_applications(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    after: After = None,
    name_prefix: Annotated[
        str | None, Query(max_length=256, pattern=NO_NUL_PATTERN, description="names starting with this text")
    ] = None,
) -> Response:
    return json_response(await off_loop(
        lambda: services.applications.list(principal, limit=limit, after=after, name_prefix=name_prefix)
    ))


@router.get("/{application_id}", response_model=Application, responses=problem_responses(404))
async def get_application(application_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.applications.get(principal, application_id)))


@router.patch("/{application_id}", response_model=Application, responses=problem_responses(400, 404, 409, 413))
async def update_application(
    application_id: IdPath,
    body: Annotated[ApplicationUpdate, Body()],
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    fields = body.model_dump(include=body.model_fields_set)
    return json_response(await off_loop(lambda: services.applications.update(principal, application_id, fields)))


@router.delete(
    "/{application_id}",
    status_code=204,
    summary="Delete an application with its configurations and their revisions",
    responses=problem_responses(404),
)
async def delete_application(application_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    await off_loop(lambda: services.applications.delete(principal, application_id))
    return Response(status_code=204)
