"""The routes of a document, mounted once per kind of owner: `/users/{user_id}/claude-md`,
`/me/claude-md`, `/teams/{team_id}/claude-md` (and catalog items). The ETag is the commit sha
of the current version.

No `from __future__ import annotations` here: the routes are declared inside a factory, and
FastAPI must see their (local) dependency types as objects, not as unresolvable strings."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Path, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from svc.api.deps import After, IdPath, Limit, PrincipalDep, ServicesDep
from svc.api.etags import Preconditions, etag, not_modified, not_modified_response
from svc.api.json_body import JsonBodyRoute
from svc.api.operations import api_router
from svc.api.problems import problem_responses
from svc.api.responses import json_response, off_loop
from svc.api.schemas import SHA_DESCRIPTION, SHA_PATTERN, Text
from svc.services.documents import (
    Accepted,
    DocumentService,
    DocumentState,
    DocumentVersion,
    History,
    Proposal,
    ProposalStatus,
    ProposalWithDiff,
)
from svc.services.pagination import Page
from svc.services.preconditions import Precondition


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


class DocumentSave(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(description="the whole document; at most SVC_MAX_DOCUMENT_BYTES bytes as UTF-8")
    message: Message | None = Field(default=None, description="commit message; default 'Update <file name>'")


class ProposalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(description="the whole proposed document")
    message: Message = Field(description="why: becomes the commit message when accepted")


class ProposalReject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Text, Field(max_length=1024)] | None = None


def document_routes(
    prefix: str,
    owner: Callable[..., str | None],
    pick: Callable[..., Callable[[], DocumentService]],
    *,
    tag: str,
    noun: str,
    own_root: bool = False,
) -> APIRouter:
    """The document routes under `prefix` (such as `/teams/{team_id}/claude-md`): `owner`
    names the owner from the request (a path id, or None for the caller); `pick`, an async
    dependency, says how to find the mounted service: a call made in the request's one thread
    hop (`mounted(name)`, or by the request: a catalog item's type, which may take a query,
    decides the file its document has); `noun` names its routes (`get_claude_md`, …: their
    operation ids); `tag`, their OpenAPI tag. The mounting module adds the routes to its router.
    With `own_root`, the caller declares GET and PUT (or PATCH) of `prefix` itself (an
    application document answers those with its metadata)."""
    router = api_router(
        prefix, tags=[tag], responses=problem_responses(401, 403, 404, 422, 503), route_class=JsonBodyRoute
    )
    Owner = Annotated[str | None, Depends(owner)]
    Documents = Annotated[Callable[[], DocumentService], Depends(pick)]

    if not own_root:
        @router.get("", response_model=DocumentState, responses=READ_RESPONSES, name=f"get_{noun}")
        async def get_document(
            owner_id: Owner, principal: PrincipalDep, documents: Documents, expected: Preconditions
        ) -> Response:
            """The current document (empty content and version 0 when none was saved yet)."""
            return _read(await off_loop(lambda: documents().get(principal, owner_id)), expected)

        @router.put(
            "", response_model=DocumentState, responses={**WRITE_RESPONSES, **problem_responses(400)}, name=f"save_{noun}"
        )
        async def save_document(
            owner_id: Owner, body: Annotated[DocumentSave, Body()], principal: PrincipalDep, documents: Documents,
            expected: Preconditions,
        ) -> Response:
            """Save the whole document as a new version."""
            return _current(await off_loop(lambda: documents().save(
                principal, owner_id, content=body.content, message=body.message, expected=expected
            )))

    @router.get("/history", response_model=History, name=f"{noun}_history")
    async def document_history(
        owner_id: Owner, principal: PrincipalDep, documents: Documents, limit: Limit = 50,
        after: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="cursor: `next` of the last page")] = None,
    ) -> Response:
        """Versions, newest first."""
        history = await off_loop(lambda: documents().history(principal, owner_id, limit=limit, before=after))
        return json_response(history)

    @router.get("/versions/{sha}", response_model=DocumentVersion, responses=READ_RESPONSES, name=f"get_{noun}_version")
    async def get_document_version(
        owner_id: Owner, sha: Sha, principal: PrincipalDep, documents: Documents, expected: Preconditions
    ) -> Response:
        """One version with its content. A commit that is not a version of this document is 404."""
        version = await off_loop(lambda: documents().version(principal, owner_id, sha))
        return _read(version, expected)

    @router.get("/diff", response_class=Response, responses=DIFF_RESPONSES, name=f"diff_{noun}")
    async def diff_document(
        owner_id: Owner, principal: PrincipalDep, documents: Documents,
        from_: Annotated[str, Query(alias="from", pattern=SHA_PATTERN, description=SHA_DESCRIPTION)],
        to: Annotated[str, Query(pattern=SHA_PATTERN, description=SHA_DESCRIPTION)],
    ) -> Response:
        """Unified diff between two versions."""
        text = await off_loop(lambda: documents().diff(principal, owner_id, from_, to))
        return Response(content=text, media_type="text/x-diff; charset=utf-8")

    @router.post("/rollback/{sha}", response_model=DocumentState, responses=WRITE_RESPONSES, name=f"rollback_{noun}")
    async def rollback_document(
        owner_id: Owner, sha: Sha, principal: PrincipalDep, documents: Documents, expected: Preconditions
    ) -> Response:
        """Save the content of an earlier version as a new version ("Rollback to version <sha7>")."""
        return _current(await off_loop(lambda: documents().rollback(principal, owner_id, sha, expected=expected)))

    @router.post(
        "/import",
        response_model=DocumentState,
        responses={**WRITE_RESPONSES, **problem_responses(400, 415)},
        name=f"import_{noun}",
    )
    async def import_document(
        owner_id: Owner,
        file: Annotated[UploadFile, File(description="a UTF-8 file (`.md` for claude.md); BOM dropped, CRLF → LF")],
        principal: PrincipalDep,
        documents: Documents,
        expected: Preconditions,
    ) -> Response:
        """Save an uploaded Markdown file as a new version ("Import <file name> from <upload name>")."""
        return _current(await off_loop(lambda: documents().import_file(
            principal,
            owner_id,
            filename=file.filename or "",
            content_type=file.content_type,
            stream=file.file,
            expected=expected,
        )))

    @router.post(
        "/proposals",
        status_code=201,
        response_model=Proposal,
        responses=problem_responses(400, 413),
        name=f"propose_{noun}_change",
    )
    async def propose(
        owner_id: Owner, body: Annotated[ProposalCreate, Body()], principal: PrincipalDep, documents: Documents
    ) -> Response:
        """Propose a new content, based on the current version, for a writer to accept or reject."""
        proposal = await off_loop(
            lambda: documents().propose(principal, owner_id, content=body.content, message=body.message)
        )
        return json_response(proposal, status_code=201)

    @router.get("/proposals", response_model=Page[Proposal], name=f"list_{noun}_proposals")
    async def list_proposals(
        owner_id: Owner, principal: PrincipalDep, documents: Documents, limit: Limit = 50, after: After = None,
        status: Annotated[ProposalStatus | None, Query(description="only proposals in this state")] = None,
    ) -> Response:
        """Proposals, oldest first."""
        return json_response(await off_loop(
            lambda: documents().proposals(principal, owner_id, status=status, limit=limit, after=after)
        ))

    @router.get("/proposals/{proposal_id}", response_model=ProposalWithDiff, name=f"get_{noun}_proposal")
    async def get_proposal(
        owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents
    ) -> Response:
        """One proposal with the unified diff from its base to its content."""
        return json_response(await off_loop(lambda: documents().proposal(principal, owner_id, proposal_id)))

    @router.post(
        "/proposals/{proposal_id}/accept",
        response_model=Accepted,
        responses={**WRITE_RESPONSES, **problem_responses(409)},
        name=f"accept_{noun}_proposal",
    )
    async def accept_proposal(
        owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents, expected: Preconditions
    ) -> Response:
        """Make the proposal the next version (authored by the proposer); 409 when the document
        is no longer at the proposal's base, or the proposal is not open."""
        return _current(
            await off_loop(lambda: documents().accept(principal, owner_id, proposal_id, expected=expected))
        )

    @router.post(
        "/proposals/{proposal_id}/reject",
        response_model=Proposal,
        responses=problem_responses(400, 409, 413),
        name=f"reject_{noun}_proposal",
    )
    async def reject_proposal(
        owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents,
        body: Annotated[ProposalReject | None, Body()] = None,
    ) -> Response:
        """Close an open proposal without taking it, with an optional reason."""
        reason = body.reason if body else None
        return json_response(await off_loop(lambda: documents().reject(principal, owner_id, proposal_id, reason=reason)))

    @router.delete(
        "/proposals/{proposal_id}",
        response_model=Proposal,
        responses=problem_responses(409),
        name=f"withdraw_{noun}_proposal",
    )
    async def withdraw_proposal(
        owner_id: Owner, proposal_id: IdPath, principal: PrincipalDep, documents: Documents
    ) -> Response:
        """The proposer withdraws their own open proposal."""
        return json_response(await off_loop(lambda: documents().withdraw(principal, owner_id, proposal_id)))

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

    async def pick(services: ServicesDep) -> Callable[[], DocumentService]:
        return lambda: getattr(services, name)

    return pick


def _current(document: DocumentState | DocumentVersion) -> Response:
    """A document (or a version of it) with the ETag of its commit, when it has one."""
    sha = document.commit_sha
    return json_response(document, headers=None if sha is None else {"ETag": etag(sha)})


def _read(document: DocumentState | DocumentVersion, expected: Precondition) -> Response:
    """A read's answer: 412 when If-Match fails, 304 when If-None-Match does, else the body with its ETag."""
    if not_modified(expected, document.commit_sha, subject="the document"):
        return not_modified_response(document.commit_sha)
    return _current(document)


router = api_router()
for prefix, owner, pick, section in (
    ("/users/{user_id}/claude-md", _user_in_path, mounted("claude_md"), "claude.md"),
    ("/me/claude-md", _caller, mounted("claude_md"), "claude.md"),
    ("/teams/{team_id}/claude-md", _team_in_path, mounted("team_claude_md"), "teams"),
):
    router.routes.extend(document_routes(prefix, owner, pick, tag=section, noun="claude_md").routes)
