"""Semantic versions (https://semver.org/spec/v2.0.0.html) for catalog releases.

Parsed with the regular expression semver.org suggests (section "Is there a suggested regular
expression (RegEx) to check a SemVer string?"), matched in ASCII mode against the whole string,
so `v1.2.3`, `1.2`, `01.2.3` and `1.2.3\\n` are refused. Ordered by precedence as in §11:
major, minor, patch numerically; a pre-release below its normal version; pre-release
identifiers compared one by one (numbers numerically and below words, words in ASCII order,
a longer list above its prefix); build metadata ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from svc.errors import Unprocessable

SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)

_Precedence = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


@dataclass(frozen=True)
class SemVer:
    """A parsed semantic version.

    `<`, `<=`, `>`, `>=` compare precedence (build metadata ignored); `==` compares every part,
    so `1.0.0+a` and `1.0.0+b` are different versions of equal precedence.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def is_prerelease(self) -> bool:
        """True for `1.0.0-rc.1` and the like, which `latest` never names."""
        return bool(self.prerelease)

    @property
    def precedence(self) -> _Precedence:
        """A sort key that orders versions by semver precedence (§11)."""
        identifiers = tuple((0, int(i)) if i.isdigit() else (1, i) for i in self.prerelease)
        # A normal version (no pre-release) ranks above every pre-release of the same core.
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, identifiers)

    def __lt__(self, other: SemVer) -> bool:
        return self.precedence < other.precedence

    def __le__(self, other: SemVer) -> bool:
        return self.precedence <= other.precedence

    def __gt__(self, other: SemVer) -> bool:
        return self.precedence > other.precedence

    def __ge__(self, other: SemVer) -> bool:
        return self.precedence >= other.precedence


def parse_semver(text: str, *, field: str = "version") -> SemVer:
    """The semantic version `text`; raises Unprocessable (422) naming `field` when it is not one."""
    match = SEMVER.fullmatch(text)
    if match is None:
        message = f"{text!r} is not a semantic version (semver.org 2.0.0), such as 1.2.0 or 1.2.0-rc.1"
        raise Unprocessable(f"{field}: {message}", errors=[{"path": "/" + field, "message": message}])
    prerelease, build = match["prerelease"], match["buildmetadata"]
    return SemVer(
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"]),
        tuple(prerelease.split(".")) if prerelease else (),
        tuple(build.split(".")) if build else (),
    )


def latest_release(versions: Iterable[str]) -> str | None:
    """The highest version that is not a pre-release, or None when there is none.

    Of versions equal in precedence (differing only in build metadata) the one whose build
    metadata sorts last wins, so the answer never depends on the order given.
    """
    releases = [v for v in map(parse_semver, versions) if not v.is_prerelease]
    if not releases:
        return None
    return str(max(releases, key=lambda v: (v.precedence, v.build)))
