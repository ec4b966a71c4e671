"""ULID identifiers: every primary key, generated in Python."""

from __future__ import annotations

import re

from ulid import ULID

ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_ULID = re.compile(ULID_PATTERN)


def new_id() -> str:
    return str(ULID())


def is_ulid(value: str) -> bool:
    return bool(_ULID.match(value))
