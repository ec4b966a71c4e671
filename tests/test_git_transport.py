"""The marketplace's git process ends with its response, however the response ends: the
client reading it all, going away in the middle of a pack, or gone before the first byte.
A real `git upload-pack` on a real repository, driven through the ASGI response."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
import uvloop

from svc.api.routes.git import UploadPackResponse, _start_upload_pack

PACK_BYTES = 8 * 1024 * 1024  # incompressible: far more than a pipe and a socket buffer hold
RUNNERS = {"asyncio": asyncio.run, "uvloop": uvloop.run}  # uvicorn runs on uvloop where it is installed


def _git(repository: Path, *args: str, data: bytes | None = None) -> str:
    return subprocess.run(["git", f"--git-dir={repository}", *args], input=data, capture_output=True,
                          check=True).stdout.decode().strip()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A bare repository whose one commit holds a large random file, and that commit."""
    path = tmp_path_factory.mktemp("transport") / "big.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    blob = _git(path, "hash-object", "-w", "--stdin", data=os.urandom(PACK_BYTES))
    tree = _git(path, "mktree", data=f"100644 blob {blob}\tbig.bin\n".encode())
    commit = _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-m", "big")
    _git(path, "update-ref", "refs/heads/main", commit)
    return path, commit


def _fetch_request(commit: str) -> bytes:
    """A protocol-v0 stateless fetch of `commit`: one want, then done."""
    want = f"want {commit}\n".encode()
    return b"%04x" % (len(want) + 4) + want + b"0000" + b"0009done\n"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _run(repository: Path, commit: str, loop: str, *, disconnect_after: int | None, refuse_start: bool = False) -> tuple[
        subprocess.Popen, int]:
    """Serve one fetch; the client goes away after `disconnect_after` body bytes (None: reads it
    all), or before the response starts. Returns the process and the body bytes sent."""
    process = _start_upload_pack(repository, None, advertise=False, reads=True)
    response = UploadPackResponse(process, _fetch_request(commit), prefix=b"", media_type="application/x-git-upload-pack-result")
    received = 0
    gone = asyncio.Event()

    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal received
        if refuse_start:
            raise OSError("the client went away")
        received += len(message.get("body", b""))
        if disconnect_after is not None and received >= disconnect_after:
            gone.set()
            await asyncio.sleep(0)

    async def serve() -> None:
        try:
            await response({"type": "http", "asgi": {"spec_version": "2.0" if not refuse_start else "2.4"}},
                           receive, send)
        except Exception:  # the client disconnect that the server would swallow
            pass

    RUNNERS[loop](serve())
    return process, received


@pytest.mark.parametrize("loop", RUNNERS)
@pytest.mark.parametrize("how", ["reads it all", "goes away mid-pack", "gone before the first byte"])
def test_the_git_process_ends_with_the_response(repository, how, loop):
    path, commit = repository
    RUNNERS[loop](asyncio.sleep(0))  # the first uvloop in a process opens a pipe of its own, for good
    before = _open_fds()
    process, received = _run(
        path, commit, loop,
        disconnect_after={"reads it all": None, "goes away mid-pack": 64 * 1024}.get(how),
        refuse_start=how == "gone before the first byte",
    )
    assert process.returncode is not None, "git upload-pack still runs"
    assert _open_fds() <= before, "a pipe of the process stays open"
    if how == "reads it all":
        assert process.returncode == 0 and received > PACK_BYTES
    else:
        assert received < PACK_BYTES
