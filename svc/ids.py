"""ULID identifiers: every primary key, generated in Python."""

from __future__ import annotations

from ulid import ULID

ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"


def new_id() -> str:
    return str(ULID())

