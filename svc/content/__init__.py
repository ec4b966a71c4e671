"""The content store: claude.md bytes in a bare git repository. Nothing outside this package talks to git."""

from svc.content.store import Author, ContentStore, RefLock

__all__ = ["Author", "ContentStore", "RefLock"]
