"""Conditional requests (RFC 9110 §13): the parsed `If-Match` / `If-None-Match` of a request,
and the one check a write makes under its row lock.

Versions are opaque strings (a configuration's `<id>.<revision>`, a document's commit sha);
every ETag the service sends is strong. `None` as the current version means the resource has
no current representation (a claude.md never saved).
"""

from __future__ import annotations

from dataclasses import dataclass

from svc.errors import PreconditionFailed


@dataclass(frozen=True)
class EntityTag:
    """One entity-tag of a field: its opaque value, and whether it was sent weak (`W/"…"`)."""

    opaque: str
    weak: bool = False


@dataclass(frozen=True)
class Condition:
    """One `If-Match` or `If-None-Match` field: `*` (`any`) or a list of entity-tags, or
    `malformed` (neither), which fails the request: it cannot be evaluated."""

    any: bool = False
    tags: frozenset[EntityTag] = frozenset()
    malformed: bool = False

    def matches_strongly(self, current: str | None) -> bool:
        """RFC 9110 §8.8.3.2 strong comparison: a weak tag never matches."""
        return current is not None and (self.any or EntityTag(current) in self.tags)

    def matches_weakly(self, current: str | None) -> bool:
        """Weak comparison: the opaque values are equal, whether either tag is weak or not."""
        return current is not None and (self.any or current in self.versions)

    @property
    def versions(self) -> frozenset[str]:
        """The opaque values listed (what a weak comparison looks at)."""
        return frozenset(tag.opaque for tag in self.tags)


@dataclass(frozen=True)
class Precondition:
    """The preconditions of one request; a field that was not sent is None."""

    if_match: Condition | None = None
    if_none_match: Condition | None = None

    def if_match_holds(self, current: str | None) -> bool:
        """§13.1.1: true when absent, else when the current version matches strongly (`*`: exists)."""
        return self.if_match is None or self.if_match.matches_strongly(current)

    def if_none_match_holds(self, current: str | None) -> bool:
        """§13.1.2: true when absent, else when no listed tag matches weakly (`*`: does not exist)."""
        return self.if_none_match is None or not self.if_none_match.matches_weakly(current)

    def malformed_field(self) -> str | None:
        """The name of a field that is neither `*` nor a list of entity-tags, if one is."""
        if self.if_match is not None and self.if_match.malformed:
            return "If-Match"
        if self.if_none_match is not None and self.if_none_match.malformed:
            return "If-None-Match"
        return None


NONE = Precondition()


def require_current(expected: Precondition | None, current: str | None, *, subject: str, read: bool = False) -> bool:
    """Refuse (412) unless the preconditions hold for `current`, the version a write would
    replace or a read would return (RFC 9110 §13.2.2: If-Match first, then If-None-Match).

    A write calls it under the row lock, so of two writers holding the same ETag the second
    sees the first one's version and fails. For a `read` (GET, HEAD) a failing If-None-Match is
    no error: the answer is True, "not modified" (304). `subject` names the resource in the detail.
    """
    expected = expected or NONE
    malformed = expected.malformed_field()
    if malformed is not None:
        raise PreconditionFailed(
            f'{malformed} cannot be evaluated: send "*" or entity-tags as the ETag header gives them '
            '("…" or W/"…"), comma-separated (RFC 9110 §8.8.3)'
        )
    if not expected.if_match_holds(current):
        if current is None:
            raise PreconditionFailed(f"If-Match names a version, but {subject} has none yet")
        raise PreconditionFailed(
            f'the If-Match ETag is stale: {subject} has changed, it is at "{current}" (If-Match '
            "compares strongly: a W/ tag never matches); read it again"
        )
    if not expected.if_none_match_holds(current):
        if read:
            return True
        raise PreconditionFailed(f'{subject} exists at "{current}", which If-None-Match excludes')
    return False
