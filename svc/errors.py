"""Domain errors raised by services; `svc.api.problems` maps them to HTTP in one place."""

from __future__ import annotations

from typing import Any


class InternalError(Exception):
    """A bug, such as a database error no rule maps: logged with its cause, answered 500 without detail."""


class ServiceError(Exception):
    """Base of every error a client may be shown; `detail` is safe to show."""

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class BadRequest(ServiceError):
    """The request is malformed (unparseable JSON, bad filter, not UTF-8)."""


class Unauthenticated(ServiceError):
    """No token, or a token that is unknown or revoked."""


class InvalidToken(Unauthenticated):
    """A token was sent, but it is unknown or revoked (RFC 6750 `invalid_token`)."""


class Forbidden(ServiceError):
    """The caller is known but not allowed to do this."""


class NotFound(ServiceError):
    """The resource does not exist, or the caller may not know that it does."""


class Conflict(ServiceError):
    """A uniqueness rule would be broken (a name is taken)."""


class PreconditionFailed(ServiceError):
    """An `If-Match` or `If-None-Match` condition does not hold for the current version."""


class PayloadTooLarge(ServiceError):
    """A body or a stored value is over its configured limit."""


class UnsupportedMediaType(ServiceError):
    """Wrong content type or file type; `accepted` lists the media types that would do."""

    def __init__(self, detail: str, *, accepted: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.accepted = accepted


class Unprocessable(ServiceError):
    """Well-formed but invalid: a field breaks a rule or a JSON Schema."""


class Unavailable(ServiceError):
    """A dependency (the database, the content store, the git remote) cannot be reached right now.
    `retry_after` is the seconds a client should wait before trying again (None: retrying will
    not help until an operator acts)."""

    retry_after: int | None = 1


class BadGateway(ServiceError):
    """A service this one calls on the caller's behalf (GitHub) failed: unreachable, too slow, an
    error of its own (5xx) or an answer that is not what its API describes."""


class SecretUnavailable(Unavailable):
    """A secret value cannot be decrypted (its key is missing or the ciphertext fails authentication),
    or cannot be encrypted (no key is configured). `detail` names the key id, never key or value."""

    retry_after = None
