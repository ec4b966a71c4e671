"""The shared git remote (`SVC_GIT_REMOTE`) that every host's content store pushes to.

Refs move on the remote only by compare-and-swap: `git push --atomic --porcelain
--force-with-lease=<ref>:<expected> …`, with the porcelain result checked line by line,
so a ref that moved since the service last knew it is refused, never overwritten.
Objects are fetched by sha (`git fetch <remote> <sha>`, allowed by protocol v2 servers).

The URL may carry credentials (`https://user:token@host/…`). It is never put on a
command line (where `ps` and GitPython's debug log would show it): git reads it from
`GIT_CONFIG_*` environment variables as the URL of a remote named `svc`, and every
message that leaves this module has the URL replaced by its redacted form.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from svc.errors import Conflict, Unavailable

REMOTE_NAME = "svc"
ZERO_SHA = "0" * 40
# Porcelain flags of a ref the push updated or found already in place (see git-push(1)).
ACCEPTED_FLAGS = {" ", "+", "-", "*", "="}


class RemoteMoved(Conflict):
    """The remote refused a compare-and-swap: one of its refs is not at the expected value."""


@dataclass(frozen=True)
class RefUpdate:
    """Move `ref` from `old` to `new` on the remote; None as `new` deletes it, as `old` requires it absent."""

    ref: str
    new: str | None
    old: str | None


class GitRemote:
    """One git URL, reached with a time limit per command."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self._url = url
        self.timeout = timeout
        self.display = redacted_url(url)
        self._secrets = _secret_parts(url)

    def check(self, git_dir: Path) -> None:
        """Raise Unavailable, naming the (redacted) URL, when the remote cannot be read."""
        self._run(git_dir, "ls-remote", REMOTE_NAME, "HEAD")

    def push(self, git_dir: Path, updates: list[RefUpdate]) -> None:
        """Apply every update or none (`--atomic`). RemoteMoved when a ref is not where expected;
        Unavailable when the remote cannot be reached or refuses for another reason."""
        leases = [f"--force-with-lease={u.ref}:{u.old or ''}" for u in updates]
        refspecs = [f"{u.new or ''}:{u.ref}" for u in updates]
        result = self._run(
            git_dir, "push", "--atomic", "--porcelain", *leases, REMOTE_NAME, *refspecs, check=False
        )
        flags = {}
        for line in result.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and ":" in parts[1]:
                flags[parts[1].rsplit(":", 1)[1]] = (parts[0], parts[2])
        refused = {ref: summary for ref, (flag, summary) in flags.items() if flag not in ACCEPTED_FLAGS}
        if result.returncode == 0 and not refused and set(flags) >= {u.ref for u in updates}:
            return
        if any("stale info" in summary or "fetch first" in summary for summary in refused.values()):
            names = ", ".join(sorted(refused))
            raise RemoteMoved(f"the remote {self.display} refused to move {names}: it was moved by someone else")
        reason = "; ".join(f"{ref} {summary}" for ref, summary in refused.items()) or self._last_line(result)
        raise Unavailable(f"could not push to the remote {self.display}: {reason}")

    def fetch(self, git_dir: Path, *objects: str) -> None:
        """Bring the given commits (and their history) into the local repository; no ref moves."""
        options = ["--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-maintenance"]
        self._run(git_dir, "fetch", *options, REMOTE_NAME, *objects)

    def heads(self, git_dir: Path, prefix: str) -> dict[str, str]:
        """The remote's refs under `prefix` (ending in "/"): full ref name → sha."""
        return self._list(git_dir, prefix + "*", lambda name: name.startswith(prefix))

    def head(self, git_dir: Path, ref: str) -> str | None:
        """Where `ref` points on the remote, or None when it has no such ref."""
        return self._list(git_dir, ref, lambda name: name == ref).get(ref)

    def _list(self, git_dir: Path, pattern: str, wanted: Callable[[str], bool]) -> dict[str, str]:
        # ls-remote matches patterns against the tail of a ref name, hence the filter.
        output = self._run(git_dir, "ls-remote", "--refs", REMOTE_NAME, pattern).stdout
        found = {}
        for line in output.splitlines():
            sha, _, name = line.partition("\t")
            if wanted(name):
                found[name] = sha
        return found

    def redact(self, text: str) -> str:
        """`text` with the URL and any credential in it replaced."""
        text = text.replace(self._url, self.display)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _run(self, git_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if key != "GIT_DIR"}
        index = int(env.get("GIT_CONFIG_COUNT", "0"))
        env |= {
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": f"remote.{REMOTE_NAME}.url",
            f"GIT_CONFIG_VALUE_{index}": self._url,
            "GIT_TERMINAL_PROMPT": "0",  # a missing password fails at once instead of waiting
        }
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        # Its own process group, so that a timeout also ends the helpers git started (ssh, https).
        process = subprocess.Popen(
            ["git", f"--git-dir={git_dir}", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise Unavailable(
                f"the remote {self.display} did not answer `git {args[0]}` within {self.timeout:g} s"
            ) from None
        result = subprocess.CompletedProcess(process.args, process.returncode, self.redact(stdout), self.redact(stderr))
        if check and result.returncode != 0:
            raise Unavailable(f"the remote {self.display} failed `git {args[0]}`: {self._last_line(result)}")
        return result

    @staticmethod
    def _last_line(result: subprocess.CompletedProcess) -> str:
        lines = [line for line in result.stderr.splitlines() if line.strip() and line.strip() != "Done"]
        fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
        return (fatal or lines or [f"exit status {result.returncode}"])[0].strip()


def redacted_url(url: str) -> str:
    """The URL without its password or token (`https://***@host/repo.git`); other forms unchanged."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return url


def _secret_parts(url: str) -> list[str]:
    """The userinfo of a URL and its password (or lone token), as written and percent-decoded,
    longest first."""
    parts = urlsplit(url)
    if not (parts.scheme and "@" in parts.netloc):
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    # A token is often given as the user name alone (https://<token>@host/...).
    secret = userinfo.split(":", 1)[1] if ":" in userinfo else userinfo
    pieces = {userinfo, unquote(userinfo), secret, unquote(secret)}
    return sorted((p for p in pieces if p), key=len, reverse=True)
