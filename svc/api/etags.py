"""Conditional requests over HTTP (RFC 9110 §8.8.3, §13), for every router that has versions.

Services deal in opaque version strings (a configuration's `<id>.<revision>`, a document's
commit sha); this module quotes them into ETags, parses `If-Match` / `If-None-Match` into the
`Precondition` a service checks under its row lock (`require_current`), and decides a read's
answer: 412, 304, or the representation with its ETag.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Header, Response

from svc.services.preconditions import Condition, EntityTag, Precondition, require_current

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, in a comma list (whose empty
# elements §5.6.1 says to accept), or "*". Every ETag this service sends is ASCII, so obs-text
# counts as malformed.
_ENTITY_TAG = r'(W/)?"[!#-~]*"'  # etagc: %x21 / %x23-7E
_TAG_LIST = re.compile(rf"[ \t,]*(\*|{_ENTITY_TAG}([ \t]*,[ \t,]*{_ENTITY_TAG})*)?[ \t,]*")
_ONE_TAG = re.compile(r'(W/)?"([^"]*)"')


def etag(version: str) -> str:
    """The (strong) ETag header value for a version string."""
    return f'"{version}"'


@lru_cache(maxsize=256)  # clients repeat the same ETags: the parse is cached
def parse_precondition(if_match: str | None, if_none_match: str | None) -> Precondition:
    """The preconditions in these field values (None: not sent)."""
    return Precondition(if_match=_condition(if_match), if_none_match=_condition(if_none_match))


def _condition(field: str | None) -> Condition | None:
    if field is None:
        return None
    if not _TAG_LIST.fullmatch(field):
        return Condition(malformed=True)
    if field.strip(" \t,") == "*":
        return Condition(any=True)
    return Condition(tags=frozenset(EntityTag(opaque, bool(weak)) for weak, opaque in _ONE_TAG.findall(field)))


async def read_precondition(
    if_match: Annotated[
        str | None,
        Header(
            description='proceed only if the current ETag is one of these (strong comparison: a W/"…" tag '
            "never matches), or `*`: it exists; else 412",
        ),
    ] = None,
    if_none_match: Annotated[
        str | None,
        Header(
            description="proceed only if the current ETag is none of these (weak comparison), or `*`: "
            "it does not exist; else 304 on GET and HEAD, 412 on a write",
        ),
    ] = None,
) -> Precondition:
    """The request's preconditions; a malformed field fails the request with 412, naming it."""
    return parse_precondition(if_match, if_none_match)


Preconditions = Annotated[Precondition, Depends(read_precondition)]


def not_modified(expected: Precondition, current: str | None, *, subject: str) -> bool:
    """For GET and HEAD (RFC 9110 §13.2.2): 412 when If-Match fails; True when If-None-Match
    fails, which a read answers with 304."""
    return require_current(expected, current, subject=subject, read=True)


def not_modified_response(current: str, headers: dict[str, str] | None = None) -> Response:
    """A 304 with the ETag (and any other header the 200 would have carried)."""
    return Response(status_code=304, headers={"ETag": etag(current), **(headers or {})})

