"""Configurations of an application: versioned JSON with optional JSON Schema, ETags and revisions.

`/api/v1/applications/{id}/configurations` creates and lists (with `?contains=`);
`/api/v1/configurations/{id}` reads and changes one, and its revisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Body, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.door import ROUTE_BODY, doorway, reading
from svc.api.etags import Preconditions, etag, not_modified, not_modified_response
from svc.api.json_body import JsonBodyRoute, media_type_of
from svc.api.operations import api_router
from svc.api.problems import problem_responses, what_was_sent
from svc.api.responses import created, json_response
from svc.api.schemas import NO_NUL_PATTERN, Comments, Name, Reveal, SecretPaths, Text
from svc.errors import UnsupportedMediaType
from svc.services.auth import Principal
from svc.services.configurations import Configuration, Revision
from svc.services.container import Services
from svc.services.delivery import ById, Resolved
from svc.services.preconditions import Precondition
from svc.json_documents import parse_json
from svc.services.pagination import Page

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MAX_REVISION = 2**31 - 1

router = api_router(
    tags=["configurations"], responses=problem_responses(401, 403, 422, 503), route_class=JsonBodyRoute
)

Message = Annotated[Text | None, Field(max_length=1024, description="why; kept with the revision")]
JsonSchema = Annotated[
    dict[str, Any] | None,
    Field(alias="schema", description="a JSON Schema every version of config must satisfy; null removes it"),
]
ConfigJson = Annotated[
    dict[str, Any], Field(description="a JSON object; its text cannot contain \\u0000, which PostgreSQL jsonb refuses")
]
RevisionPath = Annotated[int, Path(ge=1, le=MAX_REVISION)]
RevisionQuery = Annotated[int, Query(ge=1, le=MAX_REVISION)]


class ConfigurationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    config: ConfigJson
    comments: Comments = None
    json_schema: JsonSchema = None
    secret_paths: SecretPaths = []
    message: Message = None


class ConfigurationReplace(BaseModel):
    """Replaces `config`; `comments`, `schema` and `secret_paths` change only when sent."""

    model_config = ConfigDict(extra="forbid")
    config: ConfigJson
    comments: Comments = None
    json_schema: JsonSchema = None
    secret_paths: SecretPaths = []
    message: Message = None


class ConfigurationMetadataPatch(BaseModel):
    """PATCH as application/json: change `comments`, `schema` and/or `secret_paths` (those sent); `config` stays."""

    model_config = ConfigDict(extra="forbid")
    comments: Comments = None
    json_schema: JsonSchema = None
    secret_paths: SecretPaths = []
    message: Message = None


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    revision: int = Field(ge=1, le=MAX_REVISION, description="the revision whose JSON becomes current again")
    message: Message = None


# Body fields that are configuration state, by the service's name for them.
STATE_FIELDS = {"config": "config", "json_schema": "schema", "secret_paths": "secret_paths", "comments": "comments"}

ETAG_HEADER = {"ETag": {"description": "the configuration's current version", "schema": {"type": "string"}}}
WITH_ETAG = {200: {"headers": ETAG_HEADER}}
NOT_MODIFIED = {304: {"description": "If-None-Match names the current version, or is `*`", "headers": ETAG_HEADER}}


def _sent_state(body: BaseModel) -> dict[str, Any]:
    """The configuration fields the client sent (and only those), keyed by the service's names."""
    return {STATE_FIELDS[f]: getattr(body, f) for f in body.model_fields_set if f in STATE_FIELDS}


def _written(configuration: Configuration) -> Response:
    """A configuration as a write returns it, with its new ETag."""
    return json_response(configuration, headers={"ETag": etag(configuration.version)})


@dataclass(frozen=True)
class MergePatch:
    document: Any


Patch = MergePatch | ConfigurationMetadataPatch


async def read_patch(request: Request) -> Patch:
    """The PATCH body, by content type: a JSON Merge Patch of `config`, or metadata as JSON."""
    media_type = media_type_of(request.headers.get("content-type"))
    if media_type not in (MERGE_PATCH, JSON):
        raise UnsupportedMediaType(
            f"PATCH takes {MERGE_PATCH} (a JSON Merge Patch of config) or {JSON} "
            f"(comments, schema, message), not {what_was_sent(media_type)}",
            accepted=(MERGE_PATCH, JSON),
        )
    document = parse_json(await request.body())
    try:
        return _patch_body(media_type, document)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        raise RequestValidationError(errors, body=document) from exc


def _patch_body(media_type: str, document: Any) -> Patch | None:
    """The PATCH body from its media type and JSON document; None for a media type PATCH does not take."""
    if media_type == MERGE_PATCH:
        return MergePatch(document)
    if media_type == JSON:
        return ConfigurationMetadataPatch.model_validate(document)
    return None


PATCH_REQUEST_BODY = {
    "required": True,
    "content": {
        MERGE_PATCH: {
            "schema": {
                "type": "object",
                "description": "JSON Merge Patch (RFC 7396) of config: null deletes a key, objects merge",
            }
        },
        JSON: {"schema": ConfigurationMetadataPatch.model_json_schema(by_alias=True)},
    },
}


@router.post(
    "/applications/{application_id}/configurations",
    status_code=201,
    response_model=Configuration,
    responses={201: {"headers": ETAG_HEADER}, **problem_responses(400, 404, 409, 413)},
)
async def create_configuration(
    application_id: IdPath,
    body: Annotated[ConfigurationCreate, Body()],
    principal: PrincipalDep,
    services: ServicesDep,
    request: Request,
) -> Response:
    configuration = await services.configurations.create(
        principal,
        application_id,
        name=body.name,
        config=body.config,
        comments=body.comments,
        schema=body.json_schema,
        secret_paths=body.secret_paths,
        message=body.message,
    )
    return created(
        request, configuration, "get_configuration",
        headers={"ETag": etag(configuration.version)}, configuration_id=configuration.id,
    )


@router.get(
    "/applications/{application_id}/configurations",
    response_model=Page[Configuration],
    summary="An application's configurations by id, optionally only those containing some JSON",
    responses=problem_responses(400, 404),
)
async def list_configurations(
    application_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    after: After = None,
    contains: Annotated[
        str | None,
        Query(max_length=8192, description='a JSON object the config must contain, e.g. {"feature":{"beta":true}}'),
    ] = None,
) -> Response:
    return json_response(await services.configurations.list(
        principal, application_id, limit=limit, after=after, contains=contains
    ))


@router.get(
    "/configurations/{configuration_id}",
    response_model=Configuration,
    responses={**WITH_ETAG, **NOT_MODIFIED, **problem_responses(404, 412)},
)
async def get_configuration(
    configuration_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    expected: Preconditions,
    reveal: Reveal = False,
) -> Response:
    # async, and built here from the cached document: at most one thread hop (a cache miss's read)
    return _answer(await services.delivery.read(principal, ById(configuration_id), reveal=reveal), expected)


def _answer(found: Resolved, expected: Precondition) -> Response:
    """200 with the document and its ETag, 304 when `If-None-Match` names the current version."""
    if not_modified(expected, found.version, subject=f"configuration {found.configuration_id}"):
        return not_modified_response(found.version)
    return Response(found.body, media_type=JSON, headers={"ETag": etag(found.version)})


@router.put(
    "/configurations/{configuration_id}",
    response_model=Configuration,
    summary="Replace the JSON (and comments or schema, when sent)",
    responses={**WITH_ETAG, **problem_responses(400, 404, 412, 413)},
)
async def replace_configuration(
    configuration_id: IdPath,
    body: Annotated[ConfigurationReplace, Body()],
    principal: PrincipalDep,
    services: ServicesDep,
    expected: Preconditions,
) -> Response:
    return await _replace(services, principal, configuration_id, body, expected)


async def _replace(
    services: Services, principal: Principal, configuration_id: str, body: ConfigurationReplace, expected: Precondition
) -> Response:
    """PUT's steps once its inputs are read, whether the route or the door (`svc.api.door`) read them."""
    return _written(await services.configurations.update(
        principal, configuration_id, _sent_state(body), message=body.message, expected=expected
    ))


@router.patch(
    "/configurations/{configuration_id}",
    response_model=Configuration,
    summary="Merge-patch the JSON (application/merge-patch+json) or change comments/schema (application/json)",
    responses={**WITH_ETAG, **problem_responses(400, 404, 412, 413, 415)},
    openapi_extra={"requestBody": PATCH_REQUEST_BODY},
)
async def patch_configuration(
    configuration_id: IdPath,
    change: Annotated[Patch, Depends(read_patch)],
    principal: PrincipalDep,
    services: ServicesDep,
    expected: Preconditions,
    message: Annotated[
        str | None,
        Query(max_length=1024, pattern=NO_NUL_PATTERN, description="the revision's message (a JSON body has its own)"),
    ] = None,
) -> Response:
    return await _patch(services, principal, configuration_id, change, expected, message)


async def _patch(
    services: Services, principal: Principal, configuration_id: str, change: Patch, expected: Precondition,
    message: str | None = None,
) -> Response:
    """PATCH's steps once its inputs are read, whether the route or the door (`svc.api.door`) read them."""
    if isinstance(change, MergePatch):
        updated = await services.configurations.merge(
            principal, configuration_id, change.document, message=message, expected=expected
        )
    else:
        updated = await services.configurations.update(
            principal, configuration_id, _sent_state(change), message=change.message or message, expected=expected
        )
    return _written(updated)


DOORWAYS = [
    doorway(router.routes, get_configuration, key=lambda configuration_id: ById(configuration_id),
            answer=reading(_answer), defaults=("reveal",)),
    doorway(router.routes, replace_configuration, key=lambda configuration_id: configuration_id,
            body=ROUTE_BODY, answer=_replace),
    doorway(router.routes, patch_configuration, key=lambda configuration_id: configuration_id,
            body=_patch_body, body_from=read_patch, answer=_patch, defaults=("message",)),
]


@router.delete(
    "/configurations/{configuration_id}",
    status_code=204,
    summary="Delete a configuration and its revisions",
    responses=problem_responses(404, 412),
)
async def delete_configuration(
    configuration_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    await services.configurations.delete(principal, configuration_id, expected=expected)
    return Response(status_code=204)


@router.get(
    "/configurations/{configuration_id}/revisions",
    response_model=Page[Revision],
    summary="Revisions, newest first; `after` is a revision number",
    responses=problem_responses(404),
)
async def list_revisions(
    configuration_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    after: Annotated[int | None, Query(ge=1, le=MAX_REVISION, description="the `next` of the previous page")] = None,
) -> Response:
    return json_response(
        await services.configurations.revisions(principal, configuration_id, limit=limit, after=after)
    )


@router.get(
    "/configurations/{configuration_id}/revisions/{revision}",
    response_model=Revision,
    responses=problem_responses(404),
)
async def get_revision(
    configuration_id: IdPath, revision: RevisionPath, principal: PrincipalDep, services: ServicesDep
) -> Response:
    return json_response(
        await services.configurations.revision(principal, configuration_id, revision)
    )


@router.get(
    "/configurations/{configuration_id}/diff",
    response_class=Response,
    summary="RFC 6902 JSON Patch from one revision to another",
    responses={
        200: {
            "description": "the operations that turn revision `from` into revision `to`",
            "content": {JSON_PATCH: {"schema": {"type": "array", "items": {"type": "object"}}}},
        },
        **problem_responses(404),
    },
)
async def diff_revisions(
    configuration_id: IdPath,
    from_: Annotated[int, Query(alias="from", ge=1, le=MAX_REVISION)],
    to: RevisionQuery,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    patch = await services.configurations.diff(principal, configuration_id, from_=from_, to=to)
    return Response(orjson.dumps(patch.operations), media_type=JSON_PATCH)


@router.post(
    "/configurations/{configuration_id}/rollback",
    response_model=Configuration,
    summary="Make a new revision whose JSON is that of an earlier one",
    responses={**WITH_ETAG, **problem_responses(400, 404, 412, 413)},
)
async def rollback_configuration(
    configuration_id: IdPath,
    body: Annotated[RollbackRequest, Body()],
    principal: PrincipalDep,
    services: ServicesDep,
    expected: Preconditions,
) -> Response:
    return _written(await services.configurations.rollback(
        principal, configuration_id, body.revision, message=body.message, expected=expected
    ))
