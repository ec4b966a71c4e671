"""ULID identifiers: every primary key, generated in Python."""

from __future__ import annotations

from ulid import ULID

ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
# The ULID spec's Crockford base32 is case-insensitive: ids are accepted in either case, and
# `canonical` turns them into the upper case they are stored and answered in.
ULID_ANY_CASE_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"


def new_id() -> str:
    return str(ULID())


def canonical(value: str) -> str:
    """A ULID in its canonical (upper) case."""
    return value.upper()
