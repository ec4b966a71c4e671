"""Shapes shared by several routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, Field

# Names of applications, configurations and users: 1–256 letters, digits, '.', '_', '-', but
# not "." or "..": as a URL path segment (/resolve/{application}/{configuration}) those are
# dot-segments that clients remove, so such a configuration could never be resolved. Spelled
# without look-ahead, which pydantic's regex engine lacks: a first character other than '.',
# or '.' and then one, or '..' and at least one more.
NAME_PATTERN = r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,255}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}|\.\.[A-Za-z0-9._-]{1,254})$"
NAME_DESCRIPTION = "1–256 letters, digits, '.', '_', '-'; not '.' or '..'"
Name = Annotated[str, Field(pattern=NAME_PATTERN, description=NAME_DESCRIPTION)]


def _valid_unicode(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800") and NUL ("\u0000"); PostgreSQL text can hold neither.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


# Any text but NUL, for query parameters that reach SQL (URL decoding never yields surrogates).
NO_NUL_PATTERN = r"^[^\x00]*$"
SHA_PATTERN = r"^[0-9a-fA-F]{7,40}$"
SHA_DESCRIPTION = "the commit sha of a version of this document (7 to 40 hex digits)"
EMAIL_PATTERN = r"^[^@\s<>]+@[^@\s<>]+$"

# Free text that is stored: valid Unicode without NUL. The document states the NUL rule as a
# pattern; the validator checks it with a clearer message.
Text = Annotated[str, AfterValidator(_valid_unicode), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]

# Comments on an application or a configuration.
Comments = Annotated[Text | None, Field(max_length=1024)]


# `?reveal=true` on the reads that can show secret values in clear (GET of a configuration, resolve).
Reveal = Annotated[
    bool,
    Query(
        description="admin tokens: secret values in clear, and the read is audited; 403 for any other token. "
        "A service token created with reveal_secrets gets them without asking"
    ),
]

# A configuration's secret values, as JSON Pointers (RFC 6901) into its config.
SecretPaths = Annotated[
    list[Annotated[Text, Field(max_length=512)]],
    Field(
        max_length=100,
        description='JSON Pointers to the secret values of config, e.g. ["/db/password"]: stored encrypted, '
        'shown as "<secret>"; sending "<secret>" back keeps the stored value',
    ),
]
