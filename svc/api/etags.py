"""ETag header handling shared by every router that does conditional requests.

Services deal in opaque version strings (a configuration's `<id>.<revision>`,
a document's commit sha); this module turns them into quoted ETags and parses
`If-Match` / `If-None-Match` back into sets of those strings.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header


def etag(version: str) -> str:
    """The quoted ETag header value for a version string."""
    return f'"{version}"'


def parse_etags(header: str | None) -> frozenset[str] | None:
    """The versions listed in an If-Match / If-None-Match header.

    None means "no condition": the header is absent or `*` (any current version).
    Weak validators (`W/"…"`) compare by their value.
    """
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for part in header.split(","):
        value = part.strip()
        if value.startswith("W/"):
            value = value[2:]
        versions.add(value.strip('"'))
    return frozenset(v for v in versions if v)


IfMatch = Annotated[
    str | None,
    Header(description="apply only if the resource's current ETag is one of these; else 412"),
]
IfNoneMatch = Annotated[
    str | None,
    Header(description="answer 304 without a body when the current ETag is one of these"),
]
