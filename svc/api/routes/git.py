"""`/git/teams/{team}.git` and `/git/users/{username}.git`: the Claude Code marketplaces over git's
smart HTTP protocol, read-only.

git's own `upload-pack --stateless-rpc` answers (protocol v0 and v2, shallow clones and
fetches), as a subprocess of the event loop whose output is streamed as it comes. Pushes,
other services and the dumb protocol are refused. git authenticates with HTTP Basic (the
token as the password, any user name) or a bearer token; a request without credentials gets
a Basic challenge, so git asks its credential helper.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import re
import subprocess
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Annotated

import anyio
from fastapi import APIRouter, Path as PathParam, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from svc.api.deps import services_of
from svc.api.operations import operation_id
from svc.api.problems import problem, problem_responses
from svc.api.responses import off_loop
from svc.errors import BadRequest, PayloadTooLarge, Unauthenticated
from svc.services.marketplace import OwnerKind

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/git", tags=["marketplaces"], responses=problem_responses(401, 403, 404, 422, 503),
    generate_unique_id_function=operation_id,
)

UPLOAD_PACK = "git-upload-pack"
CHALLENGE = {"WWW-Authenticate": 'Basic realm="svc"'}
NO_CACHE = {"Cache-Control": "no-cache, max-age=0, must-revalidate", "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
            "Pragma": "no-cache"}
CHUNK = 64 * 1024
MAX_FETCH_REQUEST = 64 * 1024 * 1024  # wants and haves; a gzip body is never inflated beyond it
# What git sends in Git-Protocol: colon-separated key=value pairs ("version=2").
_GIT_PROTOCOL = re.compile(r"^[A-Za-z0-9._=-]+(:[A-Za-z0-9._=-]+)*$")
Owner = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,256}$", description="the team's name or the username")]


def _mount(kind: OwnerKind) -> None:
    where = "team" if kind == "teams" else "user"

    @router.get(f"/{kind}/{{name}}.git/info/refs", name=f"{where}_marketplace_refs", response_class=Response,
                responses={200: {"content": {"application/x-git-upload-pack-advertisement": {}}}})
    async def refs(request: Request, name: Owner, service: Annotated[str | None, Query()] = None) -> Response:
        """The refs advertisement of a marketplace (`?service=git-upload-pack`)."""
        if service != UPLOAD_PACK:
            return _refused(request, service)
        return await _serve(request, kind, name, advertise=True)

    @router.post(f"/{kind}/{{name}}.git/{UPLOAD_PACK}", name=f"{where}_marketplace_upload_pack",
                 response_class=Response,
                 responses={200: {"content": {"application/x-git-upload-pack-result": {}}}, **problem_responses(400, 413)})
    async def upload_pack(request: Request, name: Owner) -> Response:
        """A fetch from a marketplace (git's stateless RPC)."""
        return await _serve(request, kind, name, advertise=False)

    @router.post(f"/{kind}/{{name}}.git/git-receive-pack", name=f"{where}_marketplace_push", response_class=Response)
    async def receive_pack(request: Request, name: Owner) -> Response:
        """Pushes are refused: a marketplace changes only through the catalog."""
        return _refused(request, "git-receive-pack")


def _refused(request: Request, service: str | None) -> Response:
    if service == "git-receive-pack":
        detail = "a marketplace is read-only: release, deprecate or delete catalog items through the API"
    else:
        detail = f"this git endpoint offers only ?service={UPLOAD_PACK} (smart HTTP), not {service or 'the dumb protocol'}"
    return problem(request, 403, detail)


async def _serve(request: Request, kind: OwnerKind, name: str, *, advertise: bool) -> Response:
    services = services_of(request.app)
    try:
        principal = await services.authenticator.principal(_token(request))
    except Unauthenticated as exc:
        return problem(request, 401, exc.detail, headers=CHALLENGE)
    protocol = request.headers.get("git-protocol")
    if protocol is not None and not _GIT_PROTOCOL.match(protocol):
        protocol = None
    version_2 = protocol is not None and "version=2" in protocol.split(":")
    shows_refs = not (advertise and version_2)  # v2 advertises capabilities; refs come with ls-refs
    # Read before the response starts: the response then listens for the client going away,
    # and would take the body's messages. A fetch's request (wants and haves) is small.
    body = None if advertise else await _request_body(request)

    def start() -> subprocess.Popen:
        repository = services.marketplace.repository(principal, kind, name, shows_refs=shows_refs)
        return _start_upload_pack(repository, protocol, advertise=advertise, reads=body is not None)

    prefix = b""
    if advertise and not version_2:  # v0 starts with the service line; v2 with its capabilities
        prefix = _pkt_line(f"# service={UPLOAD_PACK}\n") + b"0000"
    media_type = f"application/x-{UPLOAD_PACK}-{'advertisement' if advertise else 'result'}"
    return UploadPackResponse(await off_loop(start), body, prefix=prefix, media_type=media_type)


def _token(request: Request) -> str | None:
    """The token of `Authorization: Basic` (the password, or a lone user name) or `Bearer`."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        raise Unauthenticated(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("the Basic credentials are not base64 of user:token") from None
    return password or user or None


async def _request_body(request: Request) -> bytes:
    """The request body, un-gzipped when git compressed it (it does for large ones)."""
    body = await request.body()
    if request.headers.get("content-encoding", "").lower() not in ("gzip", "x-gzip"):
        return body
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = decompressor.decompress(body, MAX_FETCH_REQUEST)
    except zlib.error:
        raise BadRequest("the request body is not valid gzip") from None
    if decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"a fetch request is at most {MAX_FETCH_REQUEST // (1024 * 1024)} MiB uncompressed")
    return plain


def _start_upload_pack(repository: Path, protocol: str | None, *, advertise: bool, reads: bool) -> subprocess.Popen:
    """Start `git upload-pack --stateless-rpc` on the repository. With Popen, which vfork()s: the
    event loop's own spawn, under uvloop, fork()s and so copies the worker's page tables
    (about 30 ms a request)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    if protocol is not None:
        env["GIT_PROTOCOL"] = protocol
    return subprocess.Popen(
        ["git", "upload-pack", "--stateless-rpc", *(["--advertise-refs"] if advertise else []), str(repository)],
        stdin=subprocess.PIPE if reads else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env,
    )


class UploadPackResponse(StreamingResponse):
    """git's output as it comes, fed the request body, all on the event loop. The process and
    its pipes end with the response, however it ends: answered, the client gone, or never
    started."""

    def __init__(self, process: subprocess.Popen, body: bytes | None, *, prefix: bytes, media_type: str) -> None:
        self.process = process
        self.transports: dict[IO[bytes], asyncio.BaseTransport] = {}  # which of its pipes the loop reads or writes
        super().__init__(self._output(body, prefix), media_type=media_type, headers=NO_CACHE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._end()

    async def _output(self, body: bytes | None, prefix: bytes) -> AsyncIterator[bytes]:
        process = self.process
        assert process.stdout is not None and process.stderr is not None
        loop = asyncio.get_running_loop()
        if body is not None:
            assert process.stdin is not None
            request, _ = await loop.connect_write_pipe(asyncio.Protocol, process.stdin)
            self.transports[process.stdin] = request
            request.write(body)  # buffered by the transport, which stops if git stops reading
            request.close()
        output = await self._reader(process.stdout)
        # Read alongside: a full stderr pipe would stall git.
        errors = asyncio.ensure_future((await self._reader(process.stderr)).read())
        if prefix:
            yield prefix
        while chunk := await output.read(CHUNK):
            yield chunk
        message = await errors
        if await _exited(process) != 0:
            log.warning("git upload-pack %s failed: %s", process.args[-1], message.decode(errors="replace").strip())

    async def _reader(self, pipe: IO[bytes]) -> asyncio.StreamReader:
        reader = asyncio.StreamReader(limit=CHUNK)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe)
        self.transports[pipe] = transport
        return reader

    async def _end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            await _exited(self.process)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe in self.transports:
                self.transports[pipe].close()  # which closes the pipe, in its time
            elif pipe is not None:
                pipe.close()


async def _exited(process: subprocess.Popen) -> int:
    """The process's exit status, awaited on the loop through a pidfd (no thread, no SIGCHLD)."""
    if process.poll() is None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(process.pid)  # a child that exits meanwhile stays ours (a zombie) until waited for
        try:
            exited = loop.create_future()
            loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(pidfd)
        finally:
            os.close(pidfd)
    return process.wait()


def _pkt_line(text: str) -> bytes:
    data = text.encode()
    return b"%04x" % (len(data) + 4) + data


_mount("teams")
_mount("users")
