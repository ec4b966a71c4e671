"""Every kind of document, listed once: `svc verify` reads each document's bytes by its kind's file
name. A new kind is defined beside its mount and added here."""

from __future__ import annotations

from svc.services.catalog import ITEM_KINDS
from svc.services.claude_md import CLAUDE_MD
from svc.services.documents import DocumentKind
from svc.services.products import APPLICATION_DOCUMENT

KINDS: dict[str, DocumentKind] = {kind.name: kind for kind in (CLAUDE_MD, *ITEM_KINDS.values(), APPLICATION_DOCUMENT)}
