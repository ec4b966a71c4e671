"""`/api/v1/catalog`: skills, MCP servers and tools; `/me/installs` and `/me/bundle`. An item's
content is a document, mounted at `/catalog/{item_id}/document` with the routes of every
document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.etags import Preconditions, etag, not_modified, not_modified_response
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import created, json_response, off_loop
from svc.api.routes.documents import Message, document_routes
from svc.api.schemas import NO_NUL_PATTERN, Text
from svc.ids import ULID_PATTERN
from svc.services.catalog import Hit, Installed, Item, ItemType, Owner, Release, Releases, Status
from svc.services.documents import DocumentService
from svc.services.pagination import Page

router = api_router(tags=["catalog"], responses=problem_responses(401, 403, 404, 422, 503), route_class=JsonBodyRoute)

Tag = Annotated[Text, Field(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Field(max_length=20)]
Description = Annotated[Text, Field(max_length=1024)]
Cursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9a-f]{8}\.[0-9A-HJKMNP-TV-Z]{26}$", description="cursor: the `next` of the previous page"),
]


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: ItemType
    name: Annotated[Text, Field(min_length=1, max_length=200)] = Field(
        description="skill: its front matter name; mcp: the server.json name (reverse-DNS); tool: the tool's name"
    )
    owner: Owner
    description: Description = ""
    tags: Tags = []
    content: str = Field(description="SKILL.md, server.json or the tool definition; validated by type")
    message: Message | None = Field(default=None, description="commit message of the first version")


class ItemUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")
    description: Description = None
    tags: Tags = None
    status: Status = None


class ReleaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[Text, Field(max_length=256, description="a semantic version, such as 1.2.0")]
    sha: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{7,40}$")] | None = Field(
        default=None, description="a version of the content (default: the current one)"
    )
    notes: Annotated[Text, Field(max_length=4096)] | None = None


@router.post("/catalog", status_code=201, response_model=Item, responses=problem_responses(400, 409, 413))
async def create_item(
    body: Annotated[ItemCreate, Body()], principal: PrincipalDep, services: ServicesDep, request: Request
) -> Response:
    """Create an item and its first version; the content must pass the rules of its type."""
    item = await off_loop(lambda: services.catalog.create(principal, **body.model_dump()))
    return created(request, item, "get_item", item_id=item.id)


@router.get("/catalog", response_model=Page[Hit], responses=problem_responses(400))
async def search_items(
    principal: PrincipalDep,
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=500, pattern=NO_NUL_PATTERN, description="words, \"phrases\", -not, or")] = None,
    type: ItemType | None = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=NO_NUL_PATTERN)] = None,
    owner: Annotated[str | None, Query(pattern=ULID_PATTERN, description="a user's or a team's id")] = None,
    status: Annotated[Literal["active", "deprecated", "all"], Query(description="deprecated items only when asked")] = "active",
    limit: Limit = 50,
    after: Cursor = None,
) -> Response:
    """Items the caller may see, best match first (websearch syntax; no query: by id)."""
    return json_response(await off_loop(lambda: services.catalog.search(
        principal, q=q, type=type, tag=tag, owner=owner, status=status, limit=limit, after=after
    )))


@router.get("/catalog/{item_id}", response_model=Item)
async def get_item(item_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.catalog.get(principal, item_id)))


@router.patch("/catalog/{item_id}", response_model=Item, responses=problem_responses(400, 413))
async def update_item(
    item_id: IdPath, body: Annotated[ItemUpdate, Body()], principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Change description, tags or status; the name and type are fixed (the name is in the content)."""
    fields = body.model_dump(exclude_unset=True)
    return json_response(await off_loop(lambda: services.catalog.update(principal, item_id, fields)))


@router.delete("/catalog/{item_id}", status_code=204, response_class=Response)
async def delete_item(item_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Delete the item, its releases and installs (its history stays in git under refs/deleted/)."""
    await off_loop(lambda: services.catalog.delete(principal, item_id))
    return Response(status_code=204)


@router.post(
    "/catalog/{item_id}/releases", status_code=201, response_model=Release, responses=problem_responses(400, 409, 413)
)
async def create_release(
    item_id: IdPath, body: Annotated[ReleaseCreate, Body()], principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Pin a semantic version to a version of the content; 409 when the version exists (releases are immutable)."""
    release = await off_loop(lambda: services.catalog.create_release(
        principal, item_id, version=body.version, sha=body.sha, notes=body.notes
    ))
    return json_response(release, status_code=201)


@router.get("/catalog/{item_id}/releases", response_model=Releases)
async def list_releases(item_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: services.catalog.releases(principal, item_id)))


@router.get(
    "/catalog/{item_id}/content",
    response_class=Response,
    responses={
        200: {"description": "the raw content; ETag: its commit sha",
              "content": {"text/markdown": {}, "application/json": {}}},
        304: {"description": "Not Modified"},
        **problem_responses(412),
    },
)
async def get_content(
    item_id: IdPath,
    principal: PrincipalDep,
    services: ServicesDep,
    release: Annotated[
        str | None, Query(max_length=256, pattern=NO_NUL_PATTERN, description="a version, or `latest`; default: the current content")
    ] = None,
    *,
    expected: Preconditions,
) -> Response:
    """The bytes of a release or of the current version, with the type's content type."""
    data, commit_sha, content_type = await off_loop(lambda: services.catalog.content(principal, item_id, release))
    if not_modified(expected, commit_sha, subject="the content"):
        return not_modified_response(commit_sha)
    return Response(content=data, media_type=content_type, headers={"ETag": etag(commit_sha)})


@router.post("/catalog/{item_id}/install", response_model=Item)
async def install_item(item_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Record that the caller uses the item (idempotent); it goes into `GET /me/bundle`."""
    return json_response(await off_loop(lambda: services.catalog.install(principal, item_id)))


@router.delete("/catalog/{item_id}/install", response_model=Item)
async def uninstall_item(item_id: IdPath, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Undo an install (idempotent)."""
    return json_response(await off_loop(lambda: services.catalog.uninstall(principal, item_id)))


@router.get("/me/installs", response_model=Page[Installed])
async def my_installs(
    principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None
) -> Response:
    return json_response(await off_loop(lambda: services.catalog.installs(principal, limit=limit, after=after)))


@router.get(
    "/me/bundle",
    response_class=Response,
    responses={
        200: {
            "description": "a .tar.gz to unpack in a project: .mcp.json, .claude/CLAUDE.md, .claude/skills/, "
            ".claude/tools/, .claude/settings.json",
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "Not Modified"},
        **problem_responses(412),
    },
)
async def my_bundle(request: Request, principal: PrincipalDep, services: ServicesDep, expected: Preconditions) -> Response:
    """Everything the caller installed, as Claude Code reads it in a project: `curl … | tar xz`."""
    git_base_url = str(request.base_url).rstrip("/") + "/git"
    bundle = await off_loop(lambda: services.bundle.build(principal, git_base_url=git_base_url, expected=expected))
    if bundle.data is None:
        return not_modified_response(bundle.etag)
    headers = {"ETag": etag(bundle.etag), "Content-Disposition": 'attachment; filename="claude-bundle.tar.gz"'}
    return Response(content=bundle.data, media_type="application/gzip", headers=headers)


async def _item_in_path(item_id: IdPath) -> str:
    return item_id


async def _item_documents(item_id: IdPath, services: ServicesDep) -> Callable[[], DocumentService]:
    # Found in the request's one hop: on a cache miss it reads the item's type from the database.
    return lambda: services.catalog.documents_of(item_id)


router.routes.extend(document_routes(
    "/catalog/{item_id}/document", _item_in_path, _item_documents, tag="catalog", noun="item_document"
).routes)
