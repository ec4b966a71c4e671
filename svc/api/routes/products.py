"""Applications as products: `/applications/{id}/documents`, `/documents/{id}` (with the routes
of every document: history, versions, diff, rollback, proposals), `/applications/{id}/work-items`,
`/work-items/{id}`, `/applications/{id}/repositories`, `/repositories/{id}` and `/github/repos`.

Work items and repositories carry the ETag `"<id>.<revision>"`; an application document the
commit sha of its current version, as every document. Writes honour `If-Match`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.etags import Preconditions, etag, not_modified, not_modified_response
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import created, json_response, off_loop
from svc.api.routes.documents import Message, document_routes
from svc.api.schemas import Text
from svc.github import GitHubRepository
from svc.ids import ULID_PATTERN
from svc.services.pagination import Page
from svc.services.products import DocumentSummary, DocumentView, Imported, row_version
from svc.repositories.products import SourceRepository, WorkItem

router = api_router(
    tags=["products"], responses=problem_responses(401, 403, 404, 422, 503), route_class=JsonBodyRoute
)

DocumentType = Literal["blueprint", "architecture", "note", "plan"]
WorkItemType = Literal["feature", "fix", "refactor", "investigation"]
Status = Literal["todo", "in_progress", "done"]
Priority = Literal["low", "medium", "high", "urgent"]
Title = Annotated[Text, Field(min_length=1, max_length=256)]
RepositoryId = Annotated[
    str | None, Field(pattern=ULID_PATTERN, description="a repository of the same application")
]
ETAG_HEADER = {"ETag": {"description": "`\"<id>.<revision>\"`", "schema": {"type": "string"}}}
WRITE_RESPONSES = {200: {"headers": ETAG_HEADER}, **problem_responses(400, 404, 409, 412, 413)}


# --- documents ----------------------------------------------------------------------------


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: Title
    type: DocumentType
    content: Text = Field(description="Markdown; at most SVC_MAX_DOCUMENT_BYTES bytes as UTF-8")
    is_pinned: bool = False
    repository_id: RepositoryId = None
    message: Message | None = Field(default=None, description="commit message of the first version")


class DocumentUpdate(BaseModel):
    """Only the fields sent change; `content` makes a new version (with `message`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    title: Title = None
    type: DocumentType = None
    is_pinned: bool = None
    repository_id: RepositoryId = None
    content: Text | None = None
    message: Message | None = None


def _document(view: DocumentView, *, status_code: int = 200, request: Request | None = None) -> Response:
    sha = view.current_version.commit_sha
    headers = None if sha is None else {"ETag": etag(sha)}
    if request is not None:
        return created(request, view, "get_application_document", headers=headers, document_id=view.id)
    return json_response(view, status_code=status_code, headers=headers)


@router.post(
    "/applications/{application_id}/documents", status_code=201, response_model=DocumentView,
    responses=problem_responses(400, 413),
)
async def create_application_document(
    application_id: IdPath, body: Annotated[DocumentCreate, Body()], principal: PrincipalDep,
    services: ServicesDep, request: Request,
) -> Response:
    """A new document of the application, with its first version."""
    fields = body.model_dump(include={"title", "type", "is_pinned", "repository_id"})
    view = await off_loop(lambda: services.application_documents.create(
        principal, application_id, fields=fields, content=body.content, message=body.message
    ))
    return _document(view, request=request)


@router.get("/applications/{application_id}/documents", response_model=Page[DocumentSummary])
async def list_application_documents(
    application_id: IdPath, principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None,
    type: Annotated[DocumentType | None, Query(description="only documents of this type")] = None,
    pinned: Annotated[bool | None, Query(description="only pinned (true) or unpinned (false) documents")] = None,
) -> Response:
    """The application's documents, pinned first, then newest (without their content)."""
    return json_response(await off_loop(lambda: services.application_documents.list(
        principal, application_id, type=type, pinned=pinned, limit=limit, after=after
    )))


@router.get("/documents/{document_id}", response_model=DocumentView, responses=problem_responses(412))
async def get_application_document(
    document_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    """An application document: its metadata and current content; the ETag is its commit sha."""
    view = await off_loop(lambda: services.application_documents.get(principal, document_id))
    sha = view.current_version.commit_sha
    if not_modified(expected, sha, subject="the document"):
        return not_modified_response(sha)
    return _document(view)


@router.patch("/documents/{document_id}", response_model=DocumentView, responses=WRITE_RESPONSES)
async def update_application_document(
    document_id: IdPath, body: Annotated[DocumentUpdate, Body()], principal: PrincipalDep, services: ServicesDep,
    expected: Preconditions,
) -> Response:
    """Change the title, type, pin or repository; `content` saves a new version."""
    fields = body.model_dump(include=body.model_fields_set - {"content", "message"})
    view = await off_loop(lambda: services.application_documents.update(
        principal, document_id, fields, content=body.content, message=body.message, expected=expected
    ))
    return _document(view)


@router.delete("/documents/{document_id}", status_code=204, responses=problem_responses(412))
async def delete_application_document(
    document_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    """Delete the document; its git history is kept under refs/deleted/<id>."""
    await off_loop(lambda: services.application_documents.delete(principal, document_id, expected=expected))
    return Response(status_code=204)


async def _document_in_path(document_id: IdPath) -> str:
    return document_id


async def _application_documents(services: ServicesDep) -> Any:
    return lambda: services.application_documents.documents


router.routes.extend(document_routes(
    "/documents/{document_id}", _document_in_path, _application_documents,
    tag="products", noun="document", own_root=True,
).routes)


# --- work items ---------------------------------------------------------------------------


class WorkItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: Title
    description: Annotated[Text, Field(max_length=16384)] | None = None
    type: WorkItemType
    priority: Priority = "medium"
    repository_id: RepositoryId = None


class WorkItemUpdate(BaseModel):
    """Only the fields sent change; the status changes through POST …/status."""

    model_config = ConfigDict(extra="forbid", strict=True)
    title: Title = None
    description: Annotated[Text, Field(max_length=16384)] | None = None
    type: WorkItemType = None
    priority: Priority = None
    repository_id: RepositoryId = None


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    status: Status


def _versioned(row: WorkItem | SourceRepository, *, request: Request | None = None, route: str = "") -> Response:
    headers = {"ETag": etag(row_version(row))}
    if request is not None:
        path = {"work_item_id": row.id} if isinstance(row, WorkItem) else {"repository_id": row.id}
        return created(request, row, route, headers=headers, **path)
    return json_response(row, headers=headers)


@router.post(
    "/applications/{application_id}/work-items", status_code=201, response_model=WorkItem,
    responses=problem_responses(400, 413),
)
async def create_work_item(
    application_id: IdPath, body: Annotated[WorkItemCreate, Body()], principal: PrincipalDep,
    services: ServicesDep, request: Request,
) -> Response:
    """A new work item, in status `todo`."""
    item = await off_loop(lambda: services.work_items.create(principal, application_id, body.model_dump()))
    return _versioned(item, request=request, route="get_work_item")


@router.get("/applications/{application_id}/work-items", response_model=Page[WorkItem])
async def list_work_items(
    application_id: IdPath, principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None,
    status: Annotated[Status | None, Query(description="only items in this status")] = None,
    type: Annotated[WorkItemType | None, Query(description="only items of this type")] = None,
) -> Response:
    """The application's work items, oldest first."""
    return json_response(await off_loop(lambda: services.work_items.list(
        principal, application_id, status=status, type=type, limit=limit, after=after
    )))


@router.get("/work-items/{work_item_id}", response_model=WorkItem, responses=problem_responses(412))
async def get_work_item(
    work_item_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    item = await off_loop(lambda: services.work_items.get(principal, work_item_id))
    if not_modified(expected, row_version(item), subject="the work item"):
        return not_modified_response(row_version(item))
    return _versioned(item)


@router.patch("/work-items/{work_item_id}", response_model=WorkItem, responses=WRITE_RESPONSES)
async def update_work_item(
    work_item_id: IdPath, body: Annotated[WorkItemUpdate, Body()], principal: PrincipalDep, services: ServicesDep,
    expected: Preconditions,
) -> Response:
    fields = body.model_dump(include=body.model_fields_set)
    return _versioned(await off_loop(
        lambda: services.work_items.update(principal, work_item_id, fields, expected=expected)
    ))


@router.post("/work-items/{work_item_id}/status", response_model=WorkItem, responses=WRITE_RESPONSES)
async def transition_work_item(
    work_item_id: IdPath, body: Annotated[Transition, Body()], principal: PrincipalDep, services: ServicesDep,
    expected: Preconditions,
) -> Response:
    """Move the item: todo → in_progress → done, in_progress → todo, done → todo; any other
    move is 409 naming the allowed ones."""
    return _versioned(await off_loop(
        lambda: services.work_items.transition(principal, work_item_id, body.status, expected=expected)
    ))


@router.delete("/work-items/{work_item_id}", status_code=204, responses=problem_responses(412))
async def delete_work_item(
    work_item_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    await off_loop(lambda: services.work_items.delete(principal, work_item_id, expected=expected))
    return Response(status_code=204)


# --- repositories -------------------------------------------------------------------------

FullName = Annotated[Text, Field(min_length=3, max_length=512, pattern=r"^[^/\s]+/[^/\s]+$")]


class RepositoryFields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: Annotated[Text, Field(max_length=4096)] | None = None
    url: Annotated[Text, Field(max_length=2048, pattern=r"^https?://")] | None = None
    default_branch: Annotated[Text, Field(max_length=256)] | None = None
    is_private: bool = False
    language: Annotated[Text, Field(max_length=128)] | None = None
    github_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    stars_count: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    forks_count: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class RepositoryCreate(RepositoryFields):
    name: Annotated[Text, Field(min_length=1, max_length=256)]
    full_name: FullName


class RepositoryUpdate(RepositoryFields):
    """Only the fields sent change."""

    name: Annotated[Text, Field(min_length=1, max_length=256)] = None
    full_name: FullName = None


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    full_names: Annotated[list[FullName], Field(min_length=1, max_length=1000)]


class GitHubPage(BaseModel):
    items: list[GitHubRepository]
    next: None = Field(description="always null: every page GitHub has is read")


class ImportResult(BaseModel):
    items: list[SourceRepository] = Field(description="the repositories named, as they are now")
    changed: int = Field(description="how many were added or had their metadata refreshed")


GitHubToken = Annotated[
    str | None,
    Header(
        alias="X-GitHub-Token", description="your GitHub token; used for this request only, never stored or logged"
    ),
]
GITHUB_RESPONSES = problem_responses(400, 502) | {
    503: {**problem_responses(503)[503], "description": "GitHub's rate limit is spent; see Retry-After"}
}


@router.post(
    "/applications/{application_id}/repositories", status_code=201, response_model=SourceRepository,
    responses=problem_responses(400, 409, 413),
)
async def create_repository(
    application_id: IdPath, body: Annotated[RepositoryCreate, Body()], principal: PrincipalDep,
    services: ServicesDep, request: Request,
) -> Response:
    """Add a repository by hand."""
    row = await off_loop(lambda: services.source_repositories.create(principal, application_id, body.model_dump()))
    return _versioned(row, request=request, route="get_repository")


@router.get("/applications/{application_id}/repositories", response_model=Page[SourceRepository])
async def list_repositories(
    application_id: IdPath, principal: PrincipalDep, services: ServicesDep, limit: Limit = 50, after: After = None
) -> Response:
    return json_response(await off_loop(
        lambda: services.source_repositories.list(principal, application_id, limit=limit, after=after)
    ))


@router.post(
    "/applications/{application_id}/repositories/import", response_model=ImportResult,
    responses=GITHUB_RESPONSES | problem_responses(413),
)
async def import_repositories(
    application_id: IdPath, body: Annotated[ImportRequest, Body()], principal: PrincipalDep,
    services: ServicesDep, token: GitHubToken = None,
) -> Response:
    """Import repositories GitHub lists for the token, by full name; importing again refreshes
    their metadata (matched by GitHub's id) and never adds a second copy."""
    imported: Imported = await off_loop(lambda: services.source_repositories.import_from_github(
        principal, application_id, body.full_names, token
    ))
    return json_response(imported)


@router.get("/repositories/{repository_id}", response_model=SourceRepository, responses=problem_responses(412))
async def get_repository(
    repository_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    row = await off_loop(lambda: services.source_repositories.get(principal, repository_id))
    if not_modified(expected, row_version(row), subject="the repository"):
        return not_modified_response(row_version(row))
    return _versioned(row)


@router.patch("/repositories/{repository_id}", response_model=SourceRepository, responses=WRITE_RESPONSES)
async def update_repository(
    repository_id: IdPath, body: Annotated[RepositoryUpdate, Body()], principal: PrincipalDep,
    services: ServicesDep, expected: Preconditions,
) -> Response:
    fields = body.model_dump(include=body.model_fields_set)
    return _versioned(await off_loop(
        lambda: services.source_repositories.update(principal, repository_id, fields, expected=expected)
    ))


@router.delete("/repositories/{repository_id}", status_code=204, responses=problem_responses(412))
async def delete_repository(
    repository_id: IdPath, principal: PrincipalDep, services: ServicesDep, expected: Preconditions
) -> Response:
    await off_loop(lambda: services.source_repositories.delete(principal, repository_id, expected=expected))
    return Response(status_code=204)


@router.get("/github/repos", response_model=GitHubPage, responses=GITHUB_RESPONSES)
async def list_github_repositories(
    principal: PrincipalDep, services: ServicesDep, token: GitHubToken = None
) -> Response:
    """The repositories your GitHub token may access (every page GitHub has)."""
    found = await off_loop(lambda: services.source_repositories.github_repositories(principal, token))
    return json_response({"items": found, "next": None})
