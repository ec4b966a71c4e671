"""Callers and what they may do: bearer tokens, roles, scopes."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from anyio.to_thread import run_sync as run_in_threadpool

from svc.cache import InvalidatingCache
from svc.db import Database
from svc.listener import INVALIDATE_CHANNEL, ChangeListener
from svc.metrics import AUTH_CACHE_HITS, AUTH_CACHE_MISSES
from svc.errors import InvalidToken, Unauthenticated
from svc.repositories.tokens import Token, TokenRepository

Role = Literal["admin", "service", "user"]
TOKEN_PREFIX = "svc_"


def new_secret() -> str:
    """A fresh bearer token: 256 random bits behind a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What is stored instead of the secret. Tokens carry 256 random bits, so a plain
    SHA-256 cannot be brute-forced; presenting the hash itself as a token fails,
    because it is hashed again."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    token_id: str | None
    name: str
    role: Role
    user_id: str | None = None
    application_id: str | None = None
    read_only: bool = False

    @classmethod
    def of_token(cls, token: Token) -> Principal:
        return cls(
            token_id=token.id,
            name=token.name,
            role=token.role,
            user_id=token.user_id,
            application_id=token.application_id,
            read_only=token.read_only,
        )

    @classmethod
    def operator(cls) -> Principal:
        """The person at the terminal running a `svc` command: an admin."""
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "operator"
        return cls(token_id=None, name=f"cli:{who}", role="admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Authenticator:
    """Turns a bearer secret into a Principal, or refuses it.

    Principals are cached by token hash for at most `cache_ttl` seconds, and only while the
    worker's LISTEN connection is up: a trigger announces every revocation or change of a
    token, which empties the cache, so a revoked token fails on the next request.
    """

    def __init__(self, db: Database, *, cache_ttl: float = 60.0) -> None:
        self.db = db
        self.cache: InvalidatingCache[Principal] = InvalidatingCache(max_cost=10_000, ttl=cache_ttl)
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, listener: ChangeListener) -> None:
        self._loop = asyncio.get_running_loop()
        listener.subscribe(INVALIDATE_CHANNEL, self._on_invalidate)
        listener.on_state(self.cache.set_enabled)

    def forget_all_soon(self) -> None:
        """Empty the cache from any thread, ahead of whatever the event loop does next.

        Called after a revocation commits, before its response is sent: the revoking worker then
        never serves the revoked token again, even if the NOTIFY is read after the next request.
        """
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.cache.clear)

    def _on_invalidate(self, payload: str) -> None:
        if payload == "tokens":
            self.cache.clear()

    def cached(self, secret: str) -> Principal | None:
        """The principal of `secret` if the cache holds it (event loop only); a hit is counted."""
        found = self.cache.get(hash_secret(secret))
        if found is not None:
            AUTH_CACHE_HITS.inc()
        return found

    async def principal(self, secret: str | None) -> Principal:
        """Authenticate on the event loop: from the cache, else one query in the thread pool."""
        if not secret:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        found = self.cached(secret)
        if found is not None:
            return found
        AUTH_CACHE_MISSES.inc()
        token_hash = hash_secret(secret)
        generation = self.cache.generation
        found = await run_in_threadpool(self.authenticate_hash, token_hash)
        self.cache.put(token_hash, found, generation)
        return found

    def authenticate_hash(self, token_hash: str) -> Principal:
        with self.db.transaction() as tx:
            token = TokenRepository(tx).authenticate(token_hash)
            tx.commit()
        if token is None:
            raise InvalidToken("the token is unknown or has been revoked")
        return Principal.of_token(token)
