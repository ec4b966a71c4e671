"""The routes of a document, mounted once per kind of owner: `/users/{user_id}/claude-md`,
`/me/claude-md`, `/teams/{team_id}/claude-md` (and catalog items). The ETag is the commit sha
of the current version.

No `from __future__ import annotations` here: the routes are declared inside a factory, and
FastAPI must see their (local) dependency types as objects, not as unresolvable strings."""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Path, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.etags import Preconditions, not_modified, not_modified_response, tag
from svc.api.json_body import JsonBodyRoute
from svc.api.problems import problem_responses
from svc.api.schemas import Text
from svc.services.documents import DocumentService

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


class DocumentState(BaseModel):
    content: str
    commit_sha: str | None = Field(description="null until the first version is saved")
    version: int = Field(description="0 until the first version is saved")
    updated_at: datetime | None


class DocumentSave(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(description="the whole document; at most SVC_MAX_DOCUMENT_BYTES bytes as UTF-8")
    message: Message | None = Field(default=None, description="commit message; default 'Update <file name>'")


class VersionEntry(BaseModel):
    version: int
    commit_sha: str
    author: str
    message: str
    created_at: datetime


class History(BaseModel):
    versions: list[VersionEntry] = Field(description="newest first")
    next: str | None = Field(description="pass as `after` for older versions; null on the last page")


class DocumentVersion(VersionEntry):
    content: str



ProposalStatus = Literal["open", "accepted", "rejected", "withdrawn"]


class ProposalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(description="the whole proposed document")
    message: Message = Field(description="why: becomes the commit message when accepted")


class ProposalReject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Text, Field(max_length=1024)] | None = None


class Proposal(BaseModel):
    id: str
    status: ProposalStatus
    base_sha: str | None = Field(description="the version it was based on; null for a document that had none")
    commit_sha: str = Field(description="its content: a commit on refs/proposals/<id> whose parent is base_sha")
    author: str = Field(description="the proposer")
    message: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


class ProposalWithDiff(Proposal):
    diff: str = Field(description="unified diff from the base to the proposed content")


class ProposalPage(BaseModel):
    items: list[Proposal]
    next: str | None


class Accepted(DocumentState):
    proposal: Proposal


def document_routes(
    prefix: str,
    owner: Callable[..., str | None],
    pick: Callable[..., DocumentService],
    *,
    tag: str,
    noun: str,
) -> APIRouter:
    """The document routes under `prefix` (such as `/teams/{team_id}/claude-md`): `owner`
    names the owner from the request (a path id, or None for the caller); `pick`, a
    dependency, chooses the mounted service (`mounted(name)`, or by the request: a catalog
    item's type decides the file its document has); `noun` names its routes (`get_claude_md`,
    …: their operation ids)."""
    router = APIRouter(
        prefix=prefix, tags=[tag], responses=problem_responses(401, 403, 404, 422, 503), route_class=JsonBodyRoute
    )
    Owner = Annotated[str | None, Depends(owner)]
    Documents = Annotated[DocumentService, Depends(pick)]

    @router.get("", response_model=DocumentState, responses=READ_RESPONSES, name=f"get_{noun}")
    def get_document(
        owner_id: Owner, principal: PrincipalDep, documents: Documents, response: Response, expected: Preconditions,
    ):
        """The current document (empty content and version 0 when none was saved yet)."""
        document = documents.get(principal, owner_id)
        return _read(document, response, expected)

    @router.put(
        "", response_model=DocumentState, responses={**WRITE_RESPONSES, **problem_responses(400)}, name=f"save_{noun}"
    )
    def save_document(
        owner_id: Owner, body: Annotated[DocumentSave, Body()], principal: PrincipalDep, documents: Documents,
        response: Response, expected: Preconditions,
    ):
        """Save the whole document as a new version."""
        document = documents.save(principal, owner_id, content=body.content, message=body.message, expected=expected)
        return _current(document, response)

    @router.get("/history", response_model=History, name=f"{noun}_history")
    def document_history(
        owner_id: Owner, principal: PrincipalDep, documents: Documents, limit: Limit = 50,
        after: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="cursor: `next` of the last page")] = None,
    ):
        """Versions, newest first."""
        return documents.history(principal, owner_id, limit=limit, before=after)

    @router.get("/versions/{sha}", response_model=DocumentVersion, responses=READ_RESPONSES, name=f"get_{noun}_version")
    def get_document_version(
        owner_id: Owner, sha: Sha, principal: PrincipalDep, documents: Documents, response: Response,
        expected: Preconditions,
    ):
        """One version with its content. A commit that is not a version of this document is 404."""
        version = documents.version(principal, owner_id, sha)
        return _read(version, response, expected)

    @router.get("/diff", response_class=Response, responses=DIFF_RESPONSES, name=f"diff_{noun}")
    def diff_document(
        owner_id: Owner, principal: PrincipalDep, documents: Documents,
        from_: Annotated[str, Query(alias="from", pattern=SHA_PATTERN, description=SHA_DESCRIPTION)],
        to: Annotated[str, Query(pattern=SHA_PATTERN, description=SHA_DESCRIPTION)],
    ) -> Response:
        """Unified diff between two versions."""
        text = documents.diff(principal, owner_id, from_, to)
        return Response(content=text, media_type="text/x-diff; charset=utf-8")

    @router.post("/rollback/{sha}", response_model=DocumentState, responses=WRITE_RESPONSES, name=f"rollback_{noun}")
    def rollback_document(
        owner_id: Owner, sha: Sha, principal: PrincipalDep, documents: Documents, response: Response,
        expected: Preconditions,
    ):
        """Save the content of an earlier version as a new version ("Rollback to version <sha7>")."""
        document = documents.rollback(principal, owner_id, sha, expected=expected)
        return _current(document, response)

    @router.post(
        "/import",
        response_model=DocumentState,
        responses={**WRITE_RESPONSES, **problem_responses(400, 415)},
        name=f"import_{noun}",
    )
    def import_document(
        owner_id: Owner,
        file: Annotated[UploadFile, File(description="a UTF-8 file (`.md` for claude.md); BOM dropped, CRLF → LF")],
        principal: PrincipalDep,
        documents: Documents,
        response: Response,
        expected: Preconditions,
    ):
        """Save an uploaded Markdown file as a new version ("Import <file name> from <upload name>")."""
        document = documents.import_file(
            principal,
            owner_id,
            filename=file.filename or "",
            content_type=file.content_type,
            stream=file.file,
            expected=expected,
        )
        return _current(document, response)

    @router.post(
        "/proposals",
        status_code=201,
        response_model=Proposal,
        responses=problem_responses(400, 413),
        name=f"propose_{noun}_change",
    )
    def propose(
        owner_id: Owner, body: Annotated[ProposalCreate, Body()], principal: PrincipalDep, documents: Documents
    ):
        """Propose a new content, based on the current version, for a writer to accept or reject."""
        return documents.propose(principal, owner_id, content=body.content, message=body.message)

    @router.get("/proposals", response_model=ProposalPage, name=f"list_{noun}_proposals")
    def list_proposals(
        owner_id: Owner, principal: PrincipalDep, documents: Documents, limit: Limit = 50, after: After = None,
        status: Annotated[ProposalStatus | None, Query(description="only proposals in this state")] = None,
    ):
        """Proposals, oldest first."""
        return documents.proposals(principal, owner_id, status=status, limit=limit, after=after)

    @router.get("/proposals/{proposal_id}", response_model=ProposalWithDiff, name=f"get_{noun}_proposal")
    def get_proposal(owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents):
        """One proposal with the unified diff from its base to its content."""
        return documents.proposal(principal, owner_id, proposal_id)

    @router.post(
        "/proposals/{proposal_id}/accept",
        response_model=Accepted,
        responses={**WRITE_RESPONSES, **problem_responses(409)},
        name=f"accept_{noun}_proposal",
    )
    def accept_proposal(
        owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents, response: Response,
        expected: Preconditions,
    ):
        """Make the proposal the next version (authored by the proposer); 409 when the document
        is no longer at the proposal's base, or the proposal is not open."""
        document = documents.accept(principal, owner_id, proposal_id, expected=expected)
        return _current(document, response)

    @router.post(
        "/proposals/{proposal_id}/reject",
        response_model=Proposal,
        responses=problem_responses(400, 409, 413),
        name=f"reject_{noun}_proposal",
    )
    def reject_proposal(
        owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents,
        body: Annotated[ProposalReject | None, Body()] = None,
    ):
        """Close an open proposal without taking it, with an optional reason."""
        return documents.reject(principal, owner_id, proposal_id, reason=body.reason if body else None)

    @router.delete(
        "/proposals/{proposal_id}",
        response_model=Proposal,
        responses=problem_responses(409),
        name=f"withdraw_{noun}_proposal",
    )
    def withdraw_proposal(owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents):
        """The proposer withdraws their own open proposal."""
        return documents.withdraw(principal, owner_id, proposal_id)

    return router


# Owner dependencies are async so that FastAPI does not hop to a thread to run them.
async def _user_in_path(user_id: IdPath) -> str:
    return user_id


async def _caller() -> None:
    return None


async def _team_in_path(team_id: IdPath) -> str:
    return team_id


def mounted(name: str) -> Callable[..., Any]:
    """The dependency that picks the document service `Services.<name>`."""

    async def pick(services: ServicesDep) -> DocumentService:
        return getattr(services, name)

    return pick


def _current(document: dict[str, Any], response: Response) -> Any:
    tag(response, document["commit_sha"])
    return document


def _read(document: dict[str, Any], response: Response, expected: Preconditions) -> Any:
    """A read's answer: 412 when If-Match fails, 304 when If-None-Match does, else the body with its ETag."""
    if not_modified(expected, document["commit_sha"], subject="the document"):
        return not_modified_response(document["commit_sha"])
    return _current(document, response)


router = APIRouter()
for prefix, owner, pick, section in (
    ("/users/{user_id}/claude-md", _user_in_path, mounted("claude_md"), "claude.md"),
    ("/me/claude-md", _caller, mounted("claude_md"), "claude.md"),
    ("/teams/{team_id}/claude-md", _team_in_path, mounted("team_claude_md"), "teams"),
):
    router.include_router(document_routes(prefix, owner, pick, tag=section, noun="claude_md"))
