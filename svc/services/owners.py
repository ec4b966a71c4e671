"""The one spelling of an owner in every command: `team:NAME` or `user:USERNAME`."""

from __future__ import annotations

from dataclasses import dataclass

from svc.db import Database
from svc.errors import NotFound, ServiceError
from svc.repositories.catalog import CatalogRepository

KINDS = ("team", "user")
SPELLING = {"team": "team:NAME", "user": "user:USERNAME"}


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str


def parse_owner(spelling: str, kinds: tuple[str, ...] = KINDS) -> Owner:
    """`team:NAME` or `user:USERNAME` (those of `kinds`); ServiceError naming the accepted spellings."""
    kind, _, name = spelling.partition(":")
    if kind not in kinds or not name:
        accepted = " or ".join(SPELLING[k] for k in kinds)
        raise ServiceError(f"--owner must be {accepted}, not {spelling!r}")
    return Owner(kind, name)


def owner_id(db: Database, owner: Owner) -> str:
    """The id of the team or user so named; NotFound when there is none."""
    with db.transaction() as tx:
        found = CatalogRepository(tx).owner_id(owner.kind, owner.name)
    if found is None:
        raise NotFound(f"no {owner.kind} named {owner.name!r}")
    return found
