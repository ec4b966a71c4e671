"""A bare git repository, written without a work tree, holding one ref per document.

A save writes three loose objects in-process (blob → tree with the single entry
`claude.md` → commit whose parent is the previous version), then moves the
document's ref `refs/docs/<document id>` with `git update-ref <ref> <new> <old>`,
git's own compare-and-swap. That is the only way a ref is ever moved here:
GitPython's `Reference.set_commit` neither checks the old value nor waits for the
lock, and loses commits when several processes write one ref.

Durability: each object file is fsynced before it is renamed into place and its
directory after, so an object that exists is complete; git fsyncs refs and packs
itself (`core.fsync=committed`, set when the repository is created). Existing
objects are freshened (mtime) as git does, so a concurrent `git gc` never prunes
an object a save is about to reference.

With a remote (`SVC_GIT_REMOTE`, see `remote.py`) every ref move is first made on the
remote, by compare-and-swap from the database head, then locally; the local repository
is then this host's copy, fetched from the remote where it lacks a commit (another host
wrote it). Under the row lock the database head is the truth, so a local ref behind it
is simply moved on.

Every operation uses its own GitPython `Git` command object and clears it when
done: its persistent `git cat-file` processes live until then, and one object
shared by threads deadlocks. (A `Repo` would add two config-file parses per save
and nothing this module needs.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from git import Git, GitCommandError

from svc.content.remote import GitRemote, RefUpdate, RemoteMoved
from svc.errors import Unavailable
from svc.metrics import git_operation

log = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
DOCUMENT_REFS = "refs/docs/"
DELETED_REFS = "refs/deleted/"
PROPOSAL_REFS = "refs/proposals/"
RELEASE_REFS = "refs/releases/"
MARKETPLACE_REFS = "refs/marketplaces/"
FILENAME = "claude.md"
# A ref lock older than this has no live writer behind it (an update-ref holds its lock
# for milliseconds); younger ones may belong to a write that is still finishing.
STALE_LOCK_SECONDS = 5.0
SERVICE_IDENTITY = b"svc <svc@svc.invalid>"

REPOSITORY_CONFIG = {
    # Objects, packs and refs that git itself writes are fsynced (git >= 2.36).
    ("core", "fsync"): "committed",
    # No git command repacks on its own; `svc gc` does, without --prune=now.
    ("gc", "auto"): "0",
    # Each document's ref stays in its own file, so updates of different documents
    # never contend for packed-refs.lock.
    ("gc", "packRefs"): "false",
}


@dataclass(frozen=True)
class Author:
    """Who a commit is attributed to."""

    name: str
    email: str


@dataclass(frozen=True)
class TreeCommit:
    """A commit written from files: its sha (None when its tree was its parent's already) and
    the sha of every directory in it (path → tree sha)."""

    commit: str | None
    trees: dict[str, str]


@dataclass(frozen=True)
class RefLock:
    """A `<ref>.lock` file left next to a document's ref."""

    document_id: str
    path: Path
    age_seconds: float


def ref_name(document_id: str) -> str:
    return DOCUMENT_REFS + document_id


def deleted_ref_name(document_id: str) -> str:
    return DELETED_REFS + document_id


def proposal_ref_name(proposal_id: str) -> str:
    return PROPOSAL_REFS + proposal_id


def release_ref_name(item_id: str, version: str) -> str:
    return f"{RELEASE_REFS}{item_id}/{version}"


class ContentStore:
    """The bare repository at `path`; every method runs git through its own `Git` object."""

    def __init__(self, path: Path, remote: GitRemote | None = None) -> None:
        self.path = path
        self.objects = path / "objects"
        self.remote = remote

    # --- the repository ----------------------------------------------------------------

    def ensure(self) -> None:
        """Create the repository when missing, and give it the service's settings (a
        repository restored from a bundle lacks them). Several processes may start at once:
        a new repository is built in a staging directory and renamed into place, so exactly
        one of them creates it and none sees it half made."""
        if (self.path / "HEAD").is_file():
            self._configure()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}-", dir=self.path.parent))
        try:
            git = Git()
            git.update_environment(GIT_DIR=str(staging))
            git.init(bare=True, quiet=True)
            # Appended as text: no other process sees the staging directory, and one write costs
            # less than a `git config` process, or GitPython's rewrite of the file, for each key.
            with (staging / "config").open("a", encoding="utf-8") as config:
                config.writelines(
                    f"[{section}]\n\t{option} = {value}\n" for (section, option), value in REPOSITORY_CONFIG.items()
                )
            try:
                os.rename(staging, self.path)
            except OSError:
                if not (self.path / "HEAD").is_file():
                    raise
            else:
                _fsync_directory(self.path.parent)
                log.info("created the content repository %s", self.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _configure(self) -> None:
        with self._git() as git:
            current = _config_values(git, REPOSITORY_CONFIG)
            for (section, option), value in REPOSITORY_CONFIG.items():
                key = f"{section}.{option}"
                if current.get(key.lower()) == value:
                    continue
                try:
                    git.config(key, value)
                    log.info("set %s=%s in the content repository", key, value)
                except GitCommandError:  # fine if another process has just set it
                    if _config_values(git, [(section, option)]).get(key.lower()) != value:
                        raise

    def is_ready(self) -> bool:
        """The repository exists and this process can read and write it (for `/ready`)."""
        access = os.R_OK | os.W_OK | os.X_OK
        return (
            os.access(self.path / "HEAD", os.R_OK)
            and os.access(self.objects, access)
            and os.access(self.path / "refs", access)
        )

    @contextmanager
    def _git(self) -> Iterator[Git]:
        if not (self.path / "HEAD").is_file():
            raise Unavailable(f"the content repository {self.path} is missing or not a git repository")
        git = Git(self.path)
        # A GIT_DIR in the environment would otherwise redirect every command elsewhere.
        git.update_environment(GIT_DIR=str(self.path))
        try:
            yield git
        finally:
            git.clear_cache()  # ends its persistent cat-file processes, if any were started

    # --- saving ----------------------------------------------------------------------

    @git_operation("save")
    def save(
        self,
        document_id: str,
        content: bytes,
        *,
        parent: str | None,
        author: Author,
        message: str,
        filename: str = FILENAME,
    ) -> str:
        """Commit `content` as the next version of a document and move its ref there.

        The caller must hold the document's database row lock: that is what makes
        `parent` (the database head) the value the ref is expected to have, and what
        makes any ref lock file found here stale. Returns the new commit's sha.
        """
        commit = self._write_commit(content, parent=parent, author=author, message=message, filename=filename)
        with self._git() as git:
            if self.remote is not None:
                self._publish(git, ref_name(document_id), commit, parent)
            try:
                self._advance(git, document_id, commit, parent)
            except BaseException:
                self._unpublish(ref_name(document_id), commit, parent)
                raise
        return commit

    @git_operation("undo")
    def undo(self, document_id: str, commit_sha: str, parent: str | None) -> None:
        """Move a ref back from a commit the database did not record (best effort: whatever
        remains is reported by `svc verify`)."""
        try:
            with self._git() as git:
                _swap_ref(git, ref_name(document_id), parent, commit_sha)
        except (GitCommandError, Unavailable) as exc:
            log.error("could not move %s back from %s: %s", ref_name(document_id), commit_sha, _stderr(exc))
        self._unpublish(ref_name(document_id), commit_sha, parent)

    def _advance(self, git: Git, document_id: str, new: str, parent: str | None) -> None:
        ref = ref_name(document_id)
        expected = parent
        for _ in range(3):
            try:
                _swap_ref(git, ref, new, expected)
                return
            except GitCommandError as exc:
                failure = exc
            lock = self._lock_path(document_id)
            lock_age = _age(lock)
            if lock_age is not None:
                if lock_age < STALE_LOCK_SECONDS:
                    raise Unavailable(f"document {document_id} is still being written by another request; retry")
                _unlink_quietly(lock)
                log.warning("removed a stale lock on %s (%.0f s old)", ref, lock_age)
                continue
            current = _read_ref(git, ref)
            if current == expected:
                break
            # Under the row lock the database head is the truth: the ref is ahead of it
            # (a commit nobody was told was saved, left by a crash), was moved by hand, or,
            # with a remote, lags because another host wrote the versions since.
            level = logging.DEBUG if self.remote is not None else logging.WARNING
            log.log(level, "%s was at %s, not at the database head %s; moving it on", ref, current, parent)
            expected = current
        raise Unavailable(f"could not move {ref}: {_stderr(failure)}")

    @git_operation("write_commit")
    def write_commit(
        self, content: bytes, *, parent: str | None, author: Author, message: str, filename: str = FILENAME
    ) -> str:
        """Write a commit holding `content` as `filename` (no ref moves); returns its sha."""
        return self._write_commit(content, parent=parent, author=author, message=message, filename=filename)

    def _write_commit(
        self, content: bytes, *, parent: str | None, author: Author, message: str, filename: str
    ) -> str:
        blob = self._write_object(b"blob", content)
        tree = self._write_object(b"tree", b"100644 " + filename.encode() + b"\0" + bytes.fromhex(blob))
        return self._write_object(b"commit", _commit_body(tree, parent, author, message))

    @git_operation("write_tree_commit")
    def write_tree_commit(
        self,
        files: dict[str, bytes],
        *,
        trees: dict[str, str] | None = None,
        parent: str | None,
        author: Author,
        message: str,
    ) -> TreeCommit:
        """Write a commit holding `files` (path → bytes, directories made from the paths) and
        `trees` (path → sha of a tree already in the repository, kept as it is) on top of
        `parent`. Objects already present are only freshened, so an update that changes one
        file writes only that file's blob and the trees above it."""
        written: dict[str, str] = {}
        tree = self._write_tree(files, trees or {}, "", written, self._write_object)
        if parent is not None:
            with self._git() as git:
                if git.rev_parse(f"{parent}^{{tree}}") == tree:
                    return TreeCommit(None, written)
        return TreeCommit(self._write_object(b"commit", _commit_body(tree, parent, author, message)), written)

    def tree_sha(self, files: dict[str, bytes], *, trees: dict[str, str] | None = None) -> str:
        """The sha of the tree `write_tree_commit` would write for `files` and `trees`, without
        writing anything."""
        return self._write_tree(files, trees or {}, "", {}, _object_sha)

    @git_operation("tree_of")
    def tree_of(self, commit_sha: str) -> str | None:
        """The sha of a commit's tree, or None when the commit cannot be read."""
        with self._git() as git:
            try:
                return git.rev_parse("--verify", "--quiet", f"{commit_sha}^{{tree}}")
            except GitCommandError:
                return None

    def _write_tree(
        self,
        files: dict[str, bytes],
        trees: dict[str, str],
        prefix: str,
        written: dict[str, str],
        put: Callable[[bytes, bytes], str],
    ) -> str:
        """The tree of `files` and `trees`, each object handed to `put` (write it, or only hash it)."""
        entries = []
        below_files: dict[str, dict[str, bytes]] = {}
        below_trees: dict[str, dict[str, str]] = {}
        for path, content in files.items():
            head, _, rest = path.partition("/")
            if rest:
                below_files.setdefault(head, {})[rest] = content
            else:
                entries.append((head, b"100644", put(b"blob", content)))
        for path, sha in trees.items():
            head, _, rest = path.partition("/")
            if rest:
                below_trees.setdefault(head, {})[rest] = sha
            else:
                entries.append((head, b"40000", sha))
        for name in below_files.keys() | below_trees.keys():
            sha = self._write_tree(
                below_files.get(name, {}), below_trees.get(name, {}), f"{prefix}{name}/", written, put
            )
            written[prefix + name] = sha
            entries.append((name, b"40000", sha))
        # git orders a tree's entries by name, a directory's name compared as if it ended in "/".
        entries.sort(key=lambda e: e[0].encode() + (b"/" if e[1] == b"40000" else b""))
        body = b"".join(mode + b" " + name.encode() + b"\0" + bytes.fromhex(sha) for name, mode, sha in entries)
        return put(b"tree", body)

    @git_operation("subtrees")
    def subtrees(self, commit_sha: str, path: str) -> dict[str, str]:
        """The directories directly below `path` in a commit: name → tree sha ({} when none)."""
        with self._git() as git:
            try:
                listing = git.ls_tree(f"{commit_sha}:{path}")
            except GitCommandError:
                return {}
        found = {}
        for line in listing.splitlines():
            meta, _, name = line.partition("\t")
            mode, kind, sha = meta.split(" ")
            if kind == "tree":
                found[name] = sha
        return found

    @git_operation("read_ref")
    def read_ref(self, ref: str) -> str | None:
        """Where any ref points in this repository, or None when it has no such ref."""
        loose = loose_ref(self.path / ref)  # what git reads first; a file written whole (renamed into place)
        if loose is not None:
            return loose
        with self._git() as git:
            return _read_ref(git, ref)

    def current_ref(self, ref: str) -> str | None:
        """Where a ref shared by every host stands: on the remote when there is one (fetched
        here, and this host's copy moved on to it), else here."""
        if self.remote is None:
            return self.read_ref(ref)
        head = self.remote_ref(ref)
        local = self.read_ref(ref)
        if head is not None and head != local:
            with self._git() as git:
                self._ensure_local(git, head)
                try:
                    _swap_ref(git, ref, head, local)
                except GitCommandError as exc:
                    log.debug("%s moved meanwhile: %s", ref, _stderr(exc))
        return head

    def move_proposal_ref(self, proposal_id: str, new: str, old: str | None) -> None:
        """Compare-and-swap refs/proposals/<id> from `old` (None = absent) to `new`."""
        self.move_ref(proposal_ref_name(proposal_id), new, old)

    def delete_proposal_ref(self, proposal_id: str, commit_sha: str) -> None:
        """Remove refs/proposals/<id> if it still points at `commit_sha` (best effort)."""
        try:
            self.move_ref(proposal_ref_name(proposal_id), None, commit_sha)
        except (Unavailable, RemoteMoved) as exc:
            log.error("could not delete %s: %s", proposal_ref_name(proposal_id), exc.detail)

    # --- the remote ------------------------------------------------------------------

    @git_operation("check_remote")
    def check_remote(self) -> None:
        """Raise Unavailable when a remote is configured and cannot be read."""
        if self.remote is not None:
            self.remote.check(self.path)

    def _publish(self, git: Git, ref: str, new: str, expected: str | None) -> None:
        """Move `ref` on the remote from `expected` (the database head, under its row lock) to
        `new`. A ref found elsewhere is refused (RemoteMoved, 409), unless it holds a save
        of this service on top of `expected` that the database never recorded (a host died
        between push and COMMIT): like the local ref, it is then moved on."""
        assert self.remote is not None
        if expected is not None:
            self._ensure_local(git, expected)  # the push walks the history down to it
        try:
            self.remote.push(self.path, [RefUpdate(ref, new, expected)])
            return
        except RemoteMoved:
            current = self.remote.head(self.path, ref)
            if current is None or not self._is_unrecorded_save(git, current, expected):
                raise RemoteMoved(
                    f"{ref} on the remote {self.remote.display} is at {current or 'nothing'}, not at the "
                    f"database head {expected or '(none)'}: it was moved outside the service, so nothing "
                    "was saved; `svc verify` compares them and `--repair` resets it"
                ) from None
        log.warning("%s on the remote was at %s, a save never recorded; moving it on", ref, current)
        self.remote.push(self.path, [RefUpdate(ref, new, current)])

    def _unpublish(self, ref: str, new: str | None, old: str | None) -> None:
        """Move `ref` on the remote back from `new` to `old` (best effort, like `undo`)."""
        if self.remote is None:
            return
        try:
            self.remote.push(self.path, [RefUpdate(ref, old, new)])
        except (Unavailable, RemoteMoved) as exc:  # moved: someone else moved it meanwhile
            log.error("could not move %s back from %s on the remote: %s", ref, new, exc.detail)

    def _is_unrecorded_save(self, git: Git, sha: str, parent: str | None) -> bool:
        """`sha` is a commit this service wrote with exactly `parent` as its parent."""
        self._ensure_local(git, sha)
        committer = SERVICE_IDENTITY.decode()
        by_service = any(line.startswith(f"committer {committer} ") for line in _commit_header(git, sha))
        return by_service and _parents(git, sha) == ([parent] if parent else [])

    def _ensure_local(self, git: Git, sha: str) -> None:
        """Fetch a commit (with its history) from the remote when this repository lacks it."""
        if self.remote is not None and not self._has_commit(git, sha):
            self.remote.fetch(self.path, sha)

    def _has_commit(self, git: Git, sha: str) -> bool:
        if (self.objects / sha[:2] / sha[2:]).is_file():  # loose: no subprocess needed
            return True
        try:
            git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except GitCommandError:
            return False

    @git_operation("set_remote_ref")
    def set_remote_ref(self, ref: str, new: str | None, old: str | None) -> None:
        """Compare-and-swap any ref on the remote (None = absent), sending what it lacks."""
        assert self.remote is not None
        if new is not None:
            with self._git() as git:
                self._ensure_local(git, new)  # git pushes only what it has
        self.remote.push(self.path, [RefUpdate(ref, new, old)])

    def set_remote_head(self, document_id: str, new: str | None, old: str | None) -> None:
        """Compare-and-swap a document's ref on the remote (None = absent), sending what it lacks."""
        self.set_remote_ref(ref_name(document_id), new, old)

    def remote_head(self, document_id: str) -> str | None:
        """Where a document's ref points on the remote, or None when it has none there."""
        return self.remote_ref(ref_name(document_id))

    @git_operation("remote_ref")
    def remote_ref(self, ref: str) -> str | None:
        """Where any ref points on the remote, or None when it is not there."""
        assert self.remote is not None
        return self.remote.head(self.path, ref)

    @git_operation("fetch")
    def fetch(self, commit_shas: Iterable[str]) -> None:
        """Fetch commits this repository lacks from the remote (Unavailable when it cannot)."""
        assert self.remote is not None
        with self._git() as git:
            missing = sorted({sha for sha in commit_shas if not self._has_commit(git, sha)})
        if missing:
            self.remote.fetch(self.path, *missing)

    @git_operation("commit_time")
    def commit_time(self, commit_sha: str) -> float | None:
        """When a commit was made (seconds since the epoch), or None when it cannot be read."""
        with self._git() as git:
            try:
                return float(git.show("-s", "--format=%ct", commit_sha))
            except GitCommandError:
                return None

    def remote_heads(self) -> dict[str, str]:
        """Every document ref on the remote: document id → commit sha."""
        return {name.removeprefix(DOCUMENT_REFS): sha for name, sha in self.remote_refs(DOCUMENT_REFS).items()}

    @git_operation("remote_refs")
    def remote_refs(self, prefix: str) -> dict[str, str]:
        """Every ref under `prefix` on the remote: full ref name → commit sha."""
        assert self.remote is not None
        return self.remote.heads(self.path, prefix)

    @git_operation("create_release_ref")
    def create_release_ref(self, item_id: str, version: str, commit_sha: str) -> None:
        """Create refs/releases/<item id>/<version> at `commit_sha` with a compare-and-swap from
        absent (on the remote too, through `move_ref`): a release ref is never moved. One already
        there at the same commit (left by a release whose transaction then failed) is taken as it is."""
        ref = release_ref_name(item_id, version)
        try:
            self.move_ref(ref, commit_sha, None)
        except (Unavailable, RemoteMoved):
            if self._release_at(ref) != commit_sha:
                raise

    def _release_at(self, ref: str) -> str | None:
        """Where a release ref stands: on the remote when there is one (the shared truth), else here."""
        if self.remote is not None:
            return self.remote.head(self.path, ref)
        with self._git() as git:
            return _read_ref(git, ref)

    @git_operation("delete_release_refs")
    def delete_release_refs(self, item_id: str, releases: dict[str, str]) -> None:
        """Remove the release refs (version → commit sha) of a deleted item (best effort)."""
        for version, commit_sha in releases.items():
            ref = release_ref_name(item_id, version)
            try:
                self.move_ref(ref, None, commit_sha)
            except (Unavailable, RemoteMoved) as exc:
                log.error("could not delete %s: %s", ref, exc.detail)

    def _write_object(self, kind: bytes, data: bytes) -> str:
        """Write one loose object durably (like `git hash-object -w`) and return its sha."""
        header = _object_header(kind, data)
        sha = _object_sha(kind, data)
        directory = self.objects / sha[:2]
        path = directory / sha[2:]
        try:
            os.utime(path)  # already there: freshen it so that gc keeps it
            return sha
        except FileNotFoundError:
            pass
        try:
            directory.mkdir()
            _fsync_directory(self.objects)
        except FileExistsError:
            pass
        fd, temporary = tempfile.mkstemp(prefix="tmp_obj_", dir=directory)
        try:
            compressor = zlib.compressobj(1)
            with os.fdopen(fd, "wb") as file:
                file.write(compressor.compress(header))
                file.write(compressor.compress(data))
                file.write(compressor.flush())
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o444)
            os.replace(temporary, path)  # a concurrent writer of the same object wrote the same bytes
        except BaseException:
            _unlink_quietly(Path(temporary))
            raise
        _fsync_directory(directory)
        return sha

    # --- reading ---------------------------------------------------------------------

    @git_operation("read")
    def read(self, commit_sha: str, filename: str = FILENAME) -> bytes:
        """The bytes of `filename` (a document's file) in a commit, fetched from the remote when
        this repository lacks it."""
        with self._git() as git:
            try:
                return _cat_blob(git, commit_sha, filename)
            except GitCommandError as exc:
                if self.remote is None:
                    raise Unavailable(
                        f"the content of commit {commit_sha} is missing from the repository; run `svc verify`"
                    ) from exc
            self.remote.fetch(self.path, commit_sha)
            try:
                return _cat_blob(git, commit_sha, filename)
            except GitCommandError as exc:
                raise Unavailable(
                    f"the content of commit {commit_sha} is missing from the repository and the remote; "
                    "run `svc verify`"
                ) from exc

    @git_operation("read_many")
    def read_many(self, files: list[tuple[str, str]]) -> list[bytes]:
        """The bytes of each (commit sha, file name), through one `git cat-file --batch`; one this
        repository lacks is read as `read` does (from the remote, when there is one)."""
        with self._git() as git:
            found = []
            for commit_sha, filename in files:
                try:
                    found.append(git.get_object_data(f"{commit_sha}:{filename}")[3])
                except (GitCommandError, ValueError):
                    found.append(self.read(commit_sha, filename))
            return found

    @git_operation("head")
    def head(self, document_id: str) -> str | None:
        """Where a document's ref points, or None when it has none."""
        with self._git() as git:
            return _read_ref(git, ref_name(document_id))

    @git_operation("heads")
    def heads(self) -> dict[str, str]:
        """Every document ref: document id → commit sha."""
        return self._refs(DOCUMENT_REFS)

    @git_operation("proposal_refs")
    def proposal_refs(self) -> dict[str, str]:
        """Every proposal ref: proposal id → commit sha."""
        return self._refs(PROPOSAL_REFS)

    @git_operation("marketplace_refs")
    def marketplace_refs(self) -> dict[str, str]:
        """Every marketplace ref: `<teams|users>/<owner id>` → commit sha."""
        return self._refs(MARKETPLACE_REFS)

    def proposal_ref_age(self, proposal_id: str) -> float | None:
        """Seconds since a proposal's ref was written (None: absent or packed)."""
        return _age(self.path / proposal_ref_name(proposal_id))

    def _refs(self, prefix: str) -> dict[str, str]:
        with self._git() as git:
            lines = git.for_each_ref("--format=%(refname) %(objectname)", prefix).splitlines()
        found = {}
        for line in lines:
            name, sha = line.split(" ")
            found[name.removeprefix(prefix)] = sha
        return found

    @git_operation("is_ancestor")
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        with self._git() as git:
            try:
                git.merge_base("--is-ancestor", ancestor, descendant)
                return True
            except GitCommandError:
                return False

    @git_operation("find_problems")
    def find_problems(self, commit_shas: Iterable[str], filename: str = FILENAME) -> dict[str, str]:
        """Check that each commit exists and holds `filename`; sha → what is wrong.

        Uses one long-lived `git cat-file --batch-check` for all of them."""
        problems = {}
        with self._git() as git:
            for sha in commit_shas:
                problem = _problem_of(git, sha, filename)
                if problem is not None:
                    problems[sha] = problem
        return problems

    # --- repairs -----------------------------------------------------------------------

    @git_operation("move_ref")
    def move_ref(self, ref: str, new: str | None, old: str | None) -> None:
        """Compare-and-swap any other ref (`refs/proposals/<id>`, `refs/releases/…`) from `old`
        to `new` (None: absent / delete), on the remote first when there is one (RemoteMoved
        when it is not at `old` there). The caller holds the row lock of what the ref stands
        for; with a remote, this host's copy may lag (another host moved it) and is set anyway."""
        with self._git() as git:
            if self.remote is not None:
                if new is not None:
                    self._ensure_local(git, new)  # git pushes only what it has,
                    for parent in _parents(git, new):  # history included
                        self._ensure_local(git, parent)
                self.remote.push(self.path, [RefUpdate(ref, new, old)])
            try:
                try:
                    _swap_ref(git, ref, new, old)
                except GitCommandError:
                    if self.remote is None:
                        raise
                    _swap_ref(git, ref, new, _read_ref(git, ref))
            except GitCommandError as exc:
                self._unpublish(ref, new, old)
                raise Unavailable(f"could not move {ref}: {_stderr(exc)}") from exc

    @git_operation("set_head")
    def set_head(self, document_id: str, new: str, old: str | None) -> None:
        """Compare-and-swap a document's ref from `old` (None = absent) to `new`, fetching
        `new` from the remote when this repository lacks it."""
        with self._git() as git:
            self._ensure_local(git, new)
            try:
                _swap_ref(git, ref_name(document_id), new, old)
            except GitCommandError as exc:
                raise Unavailable(f"could not move {ref_name(document_id)}: {_stderr(exc)}") from exc

    @git_operation("retire")
    def retire(self, document_id: str) -> str | None:
        """Keep a deleted document's history: rename its ref to refs/deleted/<id> in one
        atomic ref transaction, on the remote first when there is one. Returns the new ref
        name, or None when there was no ref."""
        target = deleted_ref_name(document_id)
        on_remote = self._retire_on_remote(document_id)
        with self._git() as git:
            head = _read_ref(git, ref_name(document_id))
            if head is None:
                return target if on_remote else None
            commands = f"create {target} {head}\ndelete {ref_name(document_id)} {head}\n".encode()
            with tempfile.TemporaryFile() as stdin:
                stdin.write(commands)
                stdin.seek(0)
                try:
                    git.update_ref("--stdin", istream=stdin)
                except GitCommandError as exc:
                    raise Unavailable(f"could not move {ref_name(document_id)} to {target}: {_stderr(exc)}") from exc
        return target

    def _retire_on_remote(self, document_id: str) -> bool:
        """Rename the remote's ref as `retire` does the local one; True when there was one."""
        if self.remote is None:
            return False
        ref = ref_name(document_id)
        head = self.remote.head(self.path, ref)
        if head is None:
            return False
        with self._git() as git:
            self._ensure_local(git, head)  # git pushes only what it has
        try:
            renames = [RefUpdate(deleted_ref_name(document_id), head, None), RefUpdate(ref, None, head)]
            self.remote.push(self.path, renames)
        except RemoteMoved as exc:
            raise Unavailable(exc.detail) from exc
        return True

    @git_operation("delete_ref")
    def delete_ref(self, ref: str) -> None:
        """Delete a ref of derived data, which is made again from the database (nothing is kept
        under refs/deleted/): on the remote first when there is one, then here, each by
        compare-and-swap against the value read there. RemoteMoved when the remote's ref moves
        meanwhile; Unavailable when git fails."""
        if self.remote is not None:
            head = self.remote.head(self.path, ref)
            if head is not None:
                self.remote.push(self.path, [RefUpdate(ref, None, head)])
        with self._git() as git:
            head = _read_ref(git, ref)
            if head is None:
                return
            try:
                _swap_ref(git, ref, None, head)
            except GitCommandError as exc:
                raise Unavailable(f"could not delete {ref}: {_stderr(exc)}") from exc

    def stale_locks(self) -> dict[str, RefLock]:
        """Ref lock files old enough that no writer holds them: document id → lock."""
        found = {}
        for path in (self.path / DOCUMENT_REFS).glob("*.lock"):
            age = _age(path)
            if age is not None and age >= STALE_LOCK_SECONDS:
                document_id = path.name.removesuffix(".lock")
                found[document_id] = RefLock(document_id, path, age)
        return found

    def ref_age(self, document_id: str) -> float | None:
        """Seconds since a document's ref last moved; None when it is not a loose ref (absent,
        or packed, as in a repository cloned from a bundle)."""
        return _age(self.path / ref_name(document_id))

    def remove_stale_lock(self, document_id: str) -> bool:
        """Remove a document's ref lock when it is old enough that no writer holds it.
        Call only while holding the document's row lock. True when one was removed."""
        path = self._lock_path(document_id)
        age = _age(path)
        if age is None or age < STALE_LOCK_SECONDS:
            return False
        _unlink_quietly(path)
        return True

    def _lock_path(self, document_id: str) -> Path:
        return self.path / (ref_name(document_id) + ".lock")

    # --- housekeeping ------------------------------------------------------------------

    @git_operation("object_counts")
    def object_counts(self) -> dict[str, int]:
        """`git count-objects -v` as numbers: loose `count`, `in-pack`, `packs`, sizes in KiB."""
        with self._git() as git:
            output = git.count_objects("-v")
        counts = {}
        for line in output.splitlines():
            key, _, value = line.partition(": ")
            if value.isdigit():
                counts[key] = int(value)
        return counts

    @git_operation("repack")
    def repack(self) -> None:
        """Pack loose objects (`git gc`). Never with --prune=now: git's default grace period
        for unreachable objects is what keeps objects of in-flight saves alive."""
        with self._git() as git:
            try:
                git.gc("--quiet")
            except GitCommandError as exc:
                raise Unavailable(f"git gc failed: {_stderr(exc)}") from exc


def _object_header(kind: bytes, data: bytes) -> bytes:
    return b"%s %d\0" % (kind, len(data))


def _object_sha(kind: bytes, data: bytes) -> str:
    """An object's sha, as `git hash-object` gives it (nothing written)."""
    digest = hashlib.sha1(_object_header(kind, data))
    digest.update(data)
    return digest.hexdigest()


def _commit_body(tree: str, parent: str | None, author: Author, message: str) -> bytes:
    timestamp = b"%d +0000" % int(time.time())
    ident = b"%s <%s> %s" % (_ident_part(author.name).encode(), _ident_part(author.email).encode(), timestamp)
    lines = [b"tree " + tree.encode()]
    if parent is not None:
        lines.append(b"parent " + parent.encode())
    lines.append(b"author " + ident)
    lines.append(b"committer " + SERVICE_IDENTITY + b" " + timestamp)
    body = message.encode() if message.endswith("\n") else message.encode() + b"\n"
    return b"\n".join(lines) + b"\n\n" + body


def _ident_part(value: str) -> str:
    """A name or email git accepts in an ident line: no angle brackets or control characters."""
    cleaned = "".join(c for c in value if c not in "<>" and c.isprintable()).strip()
    return cleaned or "unknown"


def _config_values(git: Git, keys: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The repository's values of `keys` ((section, option) pairs), by lower-cased name, in one git process."""
    pattern = "^(" + "|".join(re.escape(f"{section}.{option}".lower()) for section, option in keys) + ")$"
    try:
        listed = git.config("--get-regexp", pattern)
    except GitCommandError:  # none is set
        return {}
    return {key: value for key, _, value in (line.partition(" ") for line in listed.splitlines())}


def _swap_ref(git: Git, ref: str, new: str | None, old: str | None) -> None:
    """git's compare-and-swap of a ref; new None deletes it, old None requires it absent."""
    if new is None:
        git.update_ref("-d", ref, old or ZERO_SHA)
    else:
        git.update_ref(ref, new, old or ZERO_SHA)


def _commit_header(git: Git, sha: str) -> list[str]:
    return git.cat_file("commit", sha).split("\n\n", 1)[0].splitlines()


def _parents(git: Git, sha: str) -> list[str]:
    return [line.removeprefix("parent ") for line in _commit_header(git, sha) if line.startswith("parent ")]


def _cat_blob(git: Git, commit_sha: str, filename: str) -> bytes:
    return git.cat_file("blob", f"{commit_sha}:{filename}", stdout_as_string=False, strip_newline_in_stdout=False)


def loose_ref(path: Path) -> str | None:
    """The commit a loose ref file names (`path`: the ref's file in a bare repository); None when there is none (the ref may still be packed)."""
    try:
        sha = path.read_bytes().strip().decode("ascii")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, UnicodeDecodeError):
        return None
    return sha if len(sha) == 40 and all(c in "0123456789abcdef" for c in sha) else None


def _read_ref(git: Git, ref: str) -> str | None:
    output = git.for_each_ref("--format=%(refname) %(objectname)", ref)
    for line in output.splitlines():
        name, sha = line.split(" ")
        if name == ref:
            return sha
    return None


def _problem_of(git: Git, sha: str, filename: str) -> str | None:
    try:
        try:
            kind = git.get_object_header(sha)[1]
        except ValueError:
            return f"commit {sha} is missing"
        if kind != b"commit":
            return f"{sha} is a {kind.decode()}, not a commit"
        try:
            git.get_object_header(f"{sha}:{filename}")
        except ValueError:
            return f"the {filename} of commit {sha} is missing"
    except (OSError, GitCommandError) as exc:
        git.clear_cache()  # the batch process died on this object; the next call starts afresh
        return f"commit {sha} cannot be read: {_stderr(exc)}"
    return None


def _stderr(exc: BaseException) -> str:
    text = (getattr(exc, "stderr", None) or str(exc)).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
