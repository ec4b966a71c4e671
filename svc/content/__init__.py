"""The content store: the bytes of every document in a bare git repository. Nothing outside this package talks to git."""

from svc.content.remote import GitRemote, RemoteMoved
from svc.content.store import Author, ContentStore, RefLock, deleted_ref_name, proposal_ref_name

__all__ = ["Author", "ContentStore", "GitRemote", "RefLock", "RemoteMoved", "deleted_ref_name", "proposal_ref_name"]
