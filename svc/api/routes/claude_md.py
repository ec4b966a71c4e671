"""`/api/v1/users/{user_id}/claude-md` and the same under `/api/v1/me/claude-md`:
a user's versioned claude.md document. The ETag is the commit sha of the current version.

No `from __future__ import annotations` here: the routes are declared inside a factory, and
FastAPI must see their (local) dependency types as objects, not as unresolvable strings."""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Path, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.etags import Preconditions, not_modified, not_modified_response, tag
from svc.api.problems import problem_responses
from svc.api.schemas import Text

SHA_PATTERN = r"^[0-9a-fA-F]{7,40}$"
SHA_DESCRIPTION = "the commit sha of a version of this document (7 to 40 hex digits)"

Sha = Annotated[str, Path(pattern=SHA_PATTERN, description=SHA_DESCRIPTION)]
Message = Annotated[Text, Field(min_length=1, max_length=1024)]

ETAG_HEADER = {"ETag": {"description": "the commit sha of the version", "schema": {"type": "string"}}}
WITH_ETAG = {200: {"headers": ETAG_HEADER}}
READ_RESPONSES = {
    **WITH_ETAG,
    304: {"description": "Not Modified: If-None-Match names this version, or is `*`", "headers": ETAG_HEADER},
    **problem_responses(412),
}
WRITE_RESPONSES = {**WITH_ETAG, **problem_responses(412, 413)}
DIFF_RESPONSES = {
    200: {"description": "a unified diff; empty when equal", "content": {"text/x-diff": {"schema": {"type": "string"}}}}
}


class ClaudeMd(BaseModel):
    content: str
    commit_sha: str | None = Field(description="null until the first version is saved")
    version: int = Field(description="0 until the first version is saved")
    updated_at: datetime | None


class ClaudeMdSave(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(description="the whole document; at most SVC_MAX_DOCUMENT_BYTES bytes as UTF-8")
    message: Message | None = Field(default=None, description="commit message; default 'Update claude.md'")


class VersionEntry(BaseModel):
    version: int
    commit_sha: str
    author: str
    message: str
    created_at: datetime


class History(BaseModel):
    versions: list[VersionEntry] = Field(description="newest first")
    next: str | None = Field(description="pass as `after` for older versions; null on the last page")


class ClaudeMdVersion(VersionEntry):
    content: str


def _document_routes(prefix: str, owner: Callable[..., str | None]) -> APIRouter:
    """The document routes for one way of naming the owner (a path id, or the caller)."""
    router = APIRouter(prefix=prefix, tags=["claude.md"], responses=problem_responses(401, 403, 404, 422, 503))
    Owner = Annotated[str | None, Depends(owner)]

    @router.get("/claude-md", response_model=ClaudeMd, responses=READ_RESPONSES)
    def get_claude_md(
        user_id: Owner, principal: PrincipalDep, services: ServicesDep, response: Response, expected: Preconditions,
    ):
        """The current document (empty content and version 0 when none was saved yet)."""
        document = services.claude_md.get(principal, user_id)
        return _read(document, response, expected)

    @router.put("/claude-md", response_model=ClaudeMd, responses={**WRITE_RESPONSES, **problem_responses(400)})
    def save_claude_md(
        user_id: Owner, body: Annotated[ClaudeMdSave, Body()], principal: PrincipalDep, services: ServicesDep,
        response: Response, expected: Preconditions,
    ):
        """Save the whole document as a new version."""
        document = services.claude_md.save(
            principal, user_id, content=body.content, message=body.message, expected=expected
        )
        return _current(document, response)

    @router.get("/claude-md/history", response_model=History)
    def claude_md_history(
        user_id: Owner, principal: PrincipalDep, services: ServicesDep, limit: Limit = 50,
        after: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="cursor: `next` of the last page")] = None,
    ):
        """Versions, newest first."""
        return services.claude_md.history(principal, user_id, limit=limit, before=after)

    @router.get("/claude-md/versions/{sha}", response_model=ClaudeMdVersion, responses=READ_RESPONSES)
    def get_claude_md_version(
        user_id: Owner, sha: Sha, principal: PrincipalDep, services: ServicesDep, response: Response,
        expected: Preconditions,
    ):
        """One version with its content. A commit that is not a version of this document is 404."""
        version = services.claude_md.version(principal, user_id, sha)
        return _read(version, response, expected)

    @router.get("/claude-md/diff", response_class=Response, responses=DIFF_RESPONSES)
    def diff_claude_md(
        user_id: Owner, principal: PrincipalDep, services: ServicesDep,
        from_: Annotated[str, Query(alias="from", pattern=SHA_PATTERN, description=SHA_DESCRIPTION)],
        to: Annotated[str, Query(pattern=SHA_PATTERN, description=SHA_DESCRIPTION)],
    ) -> Response:
        """Unified diff between two versions."""
        text = services.claude_md.diff(principal, user_id, from_, to)
        return Response(content=text, media_type="text/x-diff; charset=utf-8")

    @router.post("/claude-md/rollback/{sha}", response_model=ClaudeMd, responses=WRITE_RESPONSES)
    def rollback_claude_md(
        user_id: Owner, sha: Sha, principal: PrincipalDep, services: ServicesDep, response: Response,
        expected: Preconditions,
    ):
        """Save the content of an earlier version as a new version ("Rollback to version <sha7>")."""
        document = services.claude_md.rollback(principal, user_id, sha, expected=expected)
        return _current(document, response)

    @router.post(
        "/claude-md/import", response_model=ClaudeMd, responses={**WRITE_RESPONSES, **problem_responses(400, 415)}
    )
    def import_claude_md(
        user_id: Owner,
        file: Annotated[UploadFile, File(description="a UTF-8 `.md` file; a BOM is dropped, CRLF becomes LF")],
        principal: PrincipalDep,
        services: ServicesDep,
        response: Response,
        expected: Preconditions,
    ):
        """Save an uploaded Markdown file as a new version ("Import claude.md from <filename>")."""
        document = services.claude_md.import_file(
            principal,
            user_id,
            filename=file.filename or "",
            content_type=file.content_type,
            stream=file.file,
            expected=expected,
        )
        return _current(document, response)

    return router


# Owner dependencies are async so that FastAPI does not hop to a thread to run them.
async def _user_in_path(user_id: IdPath) -> str:
    return user_id


async def _caller() -> None:
    return None


def _current(document: dict[str, Any], response: Response) -> Any:
    tag(response, document["commit_sha"])
    return document


def _read(document: dict[str, Any], response: Response, expected: Preconditions) -> Any:
    """A read's answer: 412 when If-Match fails, 304 when If-None-Match does, else the body with its ETag."""
    if not_modified(expected, document["commit_sha"], subject="the document"):
        return not_modified_response(document["commit_sha"])
    return _current(document, response)


router = APIRouter()
router.include_router(_document_routes("/users/{user_id}", _user_in_path))
router.include_router(_document_routes("/me", _caller))
