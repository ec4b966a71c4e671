"""The content store: the bytes of every document in a bare git repository. Nothing outside this package talks to git."""

from svc.content.store import Author, ContentStore, RefLock, deleted_ref_name, proposal_ref_name

__all__ = ["Author", "ContentStore", "RefLock", "deleted_ref_name", "proposal_ref_name"]
