"""`svc verify [--repair]` and `svc gc`: keep the git repository in step with PostgreSQL.

PostgreSQL says which versions exist (a client was told each was saved); git holds
their bytes. Drift comes from crashes between the two writes, from power loss
undoing a ref update, or from hands on the repository. Checks, per document:

* every version's commit exists and holds the document's file (claude.md, …; not
  repairable here: report);
* the ref `refs/docs/<id>` exists and points at the database head;
* no stale `<ref>.lock` blocks its updates;

and across the repository: refs of documents the database does not know. Proposals too:
each one's commit exists and refs/proposals/<id> points at it; a proposal ref of no
proposal (its document was deleted, or its creation was cut short) is removed, as it was
never a version.

With a git remote (`SVC_GIT_REMOTE`) it also compares the remote: each document's ref
there is at the database head, no remote ref belongs to a document the database does not
know, and each proposal's and release's ref is there at its commit (other hosts read them
from there). A version this host's repository lacks (another host saved it) is
fetched from the remote by `--repair`; a remote ref that lacks the database head, is
ahead of it or was moved elsewhere is set to the head by compare-and-swap, pushing
what the remote lacks.

Repairs never drop a saved version: the ref is set to the database head (its
commit exists, or the repair is refused), stale locks are removed, and a ref
without a document is renamed to refs/deleted/<id>, not deleted. Each document is
checked and repaired holding its row lock, so a save is never in flight meanwhile.

Marketplaces (`refs/marketplaces/<teams|users>/<id>`, derived from the catalog's releases):
one whose team or user no longer exists (its removal after the deletion failed, or predates
it) is deleted with its served copy by `--repair`, not renamed (derived data is made again
from the database, never lost); one whose commit does not show what the database holds (a
crash after the ref moved and before COMMIT, a ref moved by hand) is found by hashing the
tree it should have, writing nothing, and rebuilt by `--repair` as a release would. Both
are checked holding the marketplace's advisory lock, so no rebuild is in flight meanwhile.
With a remote, a marketplace is read there (as it is served) and deleted there too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from svc.content import ContentStore
from svc.content.store import PROPOSAL_REFS, RELEASE_REFS, proposal_ref_name, release_ref_name
from svc.db import Database, Transaction
from svc.errors import NotFound, ServiceError, Unavailable
from svc.repositories.catalog import CatalogRepository, Release
from svc.repositories.documents import DocumentRepository, ProposalSha
from svc.services.document_kinds import KINDS
from svc.services.marketplace import MarketplaceService, OwnerKind, ids_of, marketplace_ref

BATCH_SIZE = 200
# A ref without a document row may belong to a first save whose transaction has not
# committed yet; only one this old is an orphan.
ORPHAN_AFTER_SECONDS = 120.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RefSide:
    """Where a document's ref is checked: this host's repository or the remote."""

    prefix: str  # of the problem names
    where: str  # after the ref name in details
    read: Callable[[ContentStore, str], str | None]
    move: Callable[[ContentStore, str, str, str | None], None]


@dataclass(frozen=True)
class PublishedRef:
    """A ref other hosts read from the remote (a proposal's, a release's), where the database
    says it stands; `locked_commit` reads that again holding its owner's row lock (None: gone)."""

    ref: str
    owner_id: str  # the proposal's document, or the release's catalog item
    commit_sha: str
    locked_commit: Callable[[Transaction], str | None]


def _proposal_ref(proposal: ProposalSha) -> PublishedRef:
    def locked_commit(tx: Transaction) -> str | None:
        documents = DocumentRepository(tx)
        found = documents.lock(proposal.document_id) and documents.proposal(proposal.document_id, proposal.id)
        return found.commit_sha if found else None

    return PublishedRef(proposal_ref_name(proposal.id), proposal.document_id, proposal.commit_sha, locked_commit)


def _release_ref(release: Release) -> PublishedRef:
    def locked_commit(tx: Transaction) -> str | None:
        items = CatalogRepository(tx)
        found = items.get(release.item_id, lock="change") and items.release(release.item_id, release.version)
        return found.commit_sha if found else None

    return PublishedRef(release_ref_name(release.item_id, release.version), release.item_id, release.commit_sha,
                        locked_commit)


LOCAL = RefSide("", "", ContentStore.head, ContentStore.set_head)
REMOTE = RefSide("remote_", " on the remote", ContentStore.remote_head, ContentStore.set_remote_head)


@dataclass(frozen=True)
class Finding:
    document_id: str
    problem: str
    detail: str
    repaired: bool = False


@dataclass
class Report:
    documents: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]


class VerifyService:
    def __init__(self, db: Database, store: ContentStore, marketplace: MarketplaceService) -> None:
        self.db = db
        self.store = store
        self.marketplace = marketplace

    def verify(self, *, repair: bool = False, progress: Progress = lambda line: None) -> Report:
        """Compare every document and marketplace with git; with `repair`, mend what can be mended."""
        report = Report()
        refs = self.store.heads()
        locks = self.store.stale_locks()
        remote_refs = self.store.remote_heads() if self.store.remote is not None else None
        known: set[str] = set()
        after = None
        while True:
            with self.db.transaction() as tx:
                batch = DocumentRepository(tx).list(limit=BATCH_SIZE, after=after)
            report.findings += self._check_versions([document.id for document in batch], repair)
            for document in batch:
                document_id = document.id
                known.add(document_id)
                if refs.get(document_id) != document.head_sha or document_id in locks:
                    report.findings += self._check_head(document_id, repair, LOCAL)
                if remote_refs is not None and remote_refs.get(document_id) != document.head_sha:
                    report.findings += self._check_head(document_id, repair, REMOTE)
            report.documents += len(batch)
            progress(f"verify: checked {report.documents} document(s), {len(report.findings)} problem(s) so far")
            if len(batch) < BATCH_SIZE:
                break
            after = batch[-1].id
        for document_id in sorted((set(refs) | set(locks)) - known):
            report.findings += self._check_orphan(document_id, document_id in refs, repair)
        for document_id in sorted(set(remote_refs or {}) - known):
            report.findings += self._check_remote_orphan(document_id, remote_refs[document_id], repair)
        report.findings += self._check_proposals(repair)
        if self.store.remote is not None:
            report.findings += self._check_published_refs(repair)
        marketplaces = sorted(self.marketplace.stored())
        for kind, owner_id in marketplaces:
            report.findings += self._check_marketplace(kind, owner_id, repair)
        progress(f"verify: checked {len(marketplaces)} marketplace(s), {len(report.findings)} problem(s) in all")
        return report

    def _check_marketplace(self, kind: OwnerKind, owner_id: str, repair: bool) -> list[Finding]:
        """A marketplace shows what the database holds, and belongs to a team or user that exists."""
        with self.db.transaction() as tx:
            try:
                detail = self.marketplace.drift(tx, kind, owner_id)
            except NotFound:
                pass  # its owner is gone: removed below, once this transaction has let go of its lock
            else:
                return [] if detail is None else [self._rebuild_marketplace(tx, kind, owner_id, detail, repair)]
        detail = f"{marketplace_ref(kind, owner_id)} or its served copy belongs to no {kind.removesuffix('s')}"
        repaired = False
        if repair:
            try:
                self.marketplace.delete(kind, owner_id)
                repaired = True
                detail += "; removed"
            except ServiceError as exc:
                detail += f"; could not remove it: {exc.detail}"
        return [Finding(owner_id, "orphan_marketplace", detail, repaired)]

    def _rebuild_marketplace(
        self, tx: Transaction, kind: OwnerKind, owner_id: str, detail: str, repair: bool
    ) -> Finding:
        repaired = False
        if repair:
            try:
                self.marketplace.commit(tx, ids_of(kind, owner_id), "Rebuild the marketplace (svc verify --repair)")
                repaired = True
                detail += "; rebuilt"
            except ServiceError as exc:
                detail += f"; could not rebuild it: {exc.detail}"
        return Finding(owner_id, "marketplace_drift", detail, repaired)

    def _check_published_refs(self, repair: bool) -> list[Finding]:
        """Each proposal's and release's ref on the remote, at the commit the database holds: a
        remote restored from an old backup, or a ref removed by hand, hides it from every other
        host. Looked at again under the owner's row lock, then set by compare-and-swap."""
        with self.db.transaction() as tx:
            published = [_proposal_ref(p) for p in DocumentRepository(tx).proposal_shas()]
            published += [_release_ref(r) for r in CatalogRepository(tx).all_releases()]
        on_remote = self.store.remote_refs(PROPOSAL_REFS) | self.store.remote_refs(RELEASE_REFS)
        return [
            finding
            for wanted in published
            if on_remote.get(wanted.ref) != wanted.commit_sha
            for finding in self._check_published_ref(wanted, repair)
        ]

    def _check_published_ref(self, wanted: PublishedRef, repair: bool) -> list[Finding]:
        with self.db.transaction() as tx:
            commit_sha = wanted.locked_commit(tx)
            current = self.store.remote_ref(wanted.ref)
            if commit_sha is None or current == commit_sha:
                return []  # decided, deleted or repaired meanwhile
            detail = f"{wanted.ref} on the remote is at {current or 'nothing'}, not at {commit_sha}"
            repaired = False
            if repair:
                try:
                    self.store.set_remote_ref(wanted.ref, commit_sha, current)
                    repaired = True
                    detail += "; reset"
                except ServiceError as exc:
                    detail += f"; could not reset it: {exc.detail}"
            tx.commit()
        return [Finding(wanted.owner_id, "remote_published_ref_drift", detail, repaired)]

    def _check_proposals(self, repair: bool) -> list[Finding]:
        refs = self.store.proposal_refs()
        with self.db.transaction() as tx:
            proposals = DocumentRepository(tx).proposal_shas()
        findings = []
        for kind in sorted({p.kind for p in proposals}):
            of_kind = [p for p in proposals if p.kind == kind]
            problems, _ = self._missing([p.commit_sha for p in of_kind], KINDS[kind].filename, repair)
            for proposal in of_kind:
                if proposal.commit_sha in problems:
                    detail = f"{problems[proposal.commit_sha]}; proposal {proposal.id} cannot be read"
                    findings.append(Finding(proposal.document_id, "missing_proposal_content", detail))
                elif refs.get(proposal.id) != proposal.commit_sha:
                    findings.append(self._reset_proposal_ref(proposal, refs.get(proposal.id), repair))
        known = {p.id for p in proposals}
        for proposal_id in sorted(set(refs) - known):
            age = self.store.proposal_ref_age(proposal_id)
            if age is not None and age < ORPHAN_AFTER_SECONDS:
                continue  # perhaps a proposal whose COMMIT is in flight
            with self.db.transaction() as tx:
                if DocumentRepository(tx).proposal_exists(proposal_id):
                    continue
            detail = f"refs/proposals/{proposal_id} belongs to no proposal"
            if repair:
                self.store.delete_proposal_ref(proposal_id, refs[proposal_id])
                detail += "; removed"
            findings.append(Finding(proposal_id, "orphan_proposal_ref", detail, repair))
        return findings

    def _reset_proposal_ref(self, proposal: ProposalSha, ref: str | None, repair: bool) -> Finding:
        detail = f"refs/proposals/{proposal.id} is at {ref or 'nothing'}, not at the proposal's commit {proposal.commit_sha}"
        repaired = False
        if repair:
            try:
                self.store.move_proposal_ref(proposal.id, proposal.commit_sha, ref)
                repaired = True
                detail += "; reset"
            except ServiceError as exc:
                detail += f"; could not reset it: {exc.detail}"
        return Finding(proposal.document_id, "proposal_ref_drift", detail, repaired)

    def _check_versions(self, document_ids: list[str], repair: bool) -> list[Finding]:
        """Every version's commit exists and holds its kind's file (one `cat-file` process per kind)."""
        with self.db.transaction() as tx:
            versions = DocumentRepository(tx).version_shas(document_ids)
        findings = []
        for kind in sorted({v.kind for v in versions}):
            of_kind = [v for v in versions if v.kind == kind]
            problems, fetched = self._missing([v.commit_sha for v in of_kind], KINDS[kind].filename, repair)
            findings += [
                Finding(v.document_id, "missing_content", f"{problems[v.commit_sha]}; that version cannot be read")
                for v in of_kind
                if v.commit_sha in problems
            ]
            findings += [
                Finding(v.document_id, "missing_content", f"commit {v.commit_sha} was missing here; fetched it", True)
                for v in of_kind
                if v.commit_sha in fetched
            ]
        return findings

    def _missing(self, shas: list[str], filename: str, repair: bool) -> tuple[dict[str, str], set[str]]:
        """The commits that are missing or lack `filename` (sha → what is wrong), and the ones
        `repair` fetched from the remote (this host lacked them: another host saved them)."""
        problems = self.store.find_problems(shas, filename)
        if not problems or self.store.remote is None:
            return problems, set()
        if not repair:
            hint = " here; `--repair` fetches it from the remote"
            return {sha: problem + hint for sha, problem in problems.items()}, set()
        self._fetch(problems)
        left = self.store.find_problems(problems, filename)
        return {sha: problem + "; the remote lacks it too" for sha, problem in left.items()}, set(problems) - set(left)

    def _fetch(self, commit_shas: Iterable[str]) -> None:
        """Fetch in one go; when that fails (one commit the remote lacks fails it all), one by one."""
        try:
            self.store.fetch(commit_shas)
        except Unavailable:
            for sha in commit_shas:
                try:
                    self.store.fetch([sha])
                except Unavailable:
                    pass

    def _check_head(self, document_id: str, repair: bool, side: RefSide) -> list[Finding]:
        """Look again holding the row lock (a save may have been in flight), then repair by
        setting the ref to the database head (on this host, or on the remote)."""
        findings = []
        with self.db.transaction() as tx:
            document = DocumentRepository(tx).lock(document_id)
            if document is None:
                return []  # deleted meanwhile
            if side is LOCAL:
                findings += self._check_lock(document_id, repair, "blocked every save of this document")
            head = document.head_sha
            ref = side.read(self.store, document_id)
            if ref != head:
                if self.store.remote is not None:
                    self._fetch([sha for sha in (head, ref) if sha])  # another host may have saved it
                problem, detail = self._describe_drift(document_id, ref, head, side.where)
                repaired = False
                if repair:
                    try:
                        side.move(self.store, document_id, head, ref)
                        repaired = True
                        detail += "; reset to the database head"
                    except ServiceError as exc:
                        detail += f"; could not reset it: {exc.detail}"
                findings.append(Finding(document_id, side.prefix + problem, detail, repaired))
            tx.commit()
        return findings

    def _check_remote_orphan(self, document_id: str, sha: str, repair: bool) -> list[Finding]:
        """A remote ref of a document the database does not know (a user deleted while the
        remote was down, or a first save that crashed before its COMMIT)."""
        self._fetch([sha])
        made = self.store.commit_time(sha)
        if made is not None and time.time() - made < ORPHAN_AFTER_SECONDS:
            return []  # may be a first save whose transaction has not committed yet
        with self.db.transaction() as tx:
            if DocumentRepository(tx).exists(document_id) or self.store.remote_head(document_id) != sha:
                return []
        return [self._retire_orphan(document_id, "remote_orphan_ref", " on the remote", repair)]

    def _describe_drift(self, document_id: str, ref: str | None, head: str, where: str) -> tuple[str, str]:
        name = f"refs/docs/{document_id}{where}"
        if ref is None:
            return "missing_ref", f"{name} is missing; the database head is {head}"
        if self.store.is_ancestor(head, ref):
            return "unacknowledged_commit", (
                f"{name} is at {ref}, ahead of the database head {head} by a commit no client was told was saved"
            )
        if self.store.is_ancestor(ref, head):
            return "ref_behind", f"{name} is at {ref}, behind the database head {head}"
        return "ref_diverged", f"{name} is at {ref}, which is not in the history of the database head {head}"

    def _check_lock(self, document_id: str, repair: bool, consequence: str) -> list[Finding]:
        lock = self.store.stale_locks().get(document_id)
        if lock is None:
            return []
        detail = f"stale lock {lock.path.name} ({lock.age_seconds:.0f} s old) {consequence}"
        removed = repair and self.store.remove_stale_lock(document_id)
        return [Finding(document_id, "stale_lock", detail + ("; removed" if removed else ""), removed)]

    def _check_orphan(self, document_id: str, has_ref: bool, repair: bool) -> list[Finding]:
        """A ref (or lock) of a document the database does not know: the user was deleted
        and renaming the ref failed, or a first save crashed before its commit."""
        age = self.store.ref_age(document_id)  # None for a packed ref: not a save in flight
        if age is not None and age < ORPHAN_AFTER_SECONDS:
            return []
        with self.db.transaction() as tx:
            if DocumentRepository(tx).exists(document_id):
                return []  # created after the listing passed it
        findings = self._check_lock(document_id, repair, "belongs to a document that does not exist")
        if has_ref:
            findings.append(self._retire_orphan(document_id, "orphan_ref", "", repair))
        return findings

    def _retire_orphan(self, document_id: str, problem: str, where: str, repair: bool) -> Finding:
        """Report a ref of no document; `repair` renames it to refs/deleted/<id> (here and on the remote)."""
        detail = f"refs/docs/{document_id}{where} belongs to no document"
        repaired = False
        if repair:
            try:
                detail += f"; renamed to {self.store.retire(document_id)}"
                repaired = True
            except Unavailable as exc:
                detail += f"; could not rename it: {exc.detail}"
        return Finding(document_id, problem, detail, repaired)


def repack(store: ContentStore, progress: Progress = lambda line: None) -> None:
    """Pack loose objects (three per save; nothing packs them otherwise). Safe while the
    service writes; reports the object counts before and after."""
    before = store.object_counts()
    progress(f"gc: {before.get('count', 0)} loose objects, {before.get('packs', 0)} pack(s); packing…")
    store.repack()
    after = store.object_counts()
    progress(f"gc: {after.get('count', 0)} loose objects, {after.get('packs', 0)} pack(s)")
