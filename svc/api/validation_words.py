"""A validation failure in words a person can act on: a pattern is named by the rule it stands for
(never shown as a regular expression), an empty value is called empty."""

from __future__ import annotations

from typing import Any

from svc.api.schemas import EMAIL_PATTERN, NAME_DESCRIPTION, NAME_PATTERN, NO_NUL_PATTERN, SHA_DESCRIPTION, SHA_PATTERN
from svc.ids import ULID_PATTERN

RULES = {
    NAME_PATTERN: f"must be {NAME_DESCRIPTION}",
    SHA_PATTERN: f"must be {SHA_DESCRIPTION}",
    ULID_PATTERN: "must be an id as the service gives them: 26 characters, digits and capital letters (a ULID)",
    EMAIL_PATTERN: "must be an e-mail address, such as ada@example.com",
    NO_NUL_PATTERN: "must not contain NUL characters",
}
UNKNOWN_PATTERN = "does not have the form this field takes (its description in /openapi.json says which)"
# A body part declared as a dataclass (a catalog item's owner) reports extra and missing fields as
# keyword arguments; said here as of any other body.
AS_OF_A_MODEL = {
    "unexpected_keyword_argument": "Extra inputs are not permitted",
    "missing_keyword_argument": "Field required",
}


def in_words(error: dict[str, Any]) -> str:
    """The message of one pydantic error, saying what is allowed."""
    kind = error.get("type", "")
    limits = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return RULES.get(limits.get("pattern"), UNKNOWN_PATTERN)
    if kind in ("too_short", "string_too_short"):
        if limits.get("min_length") == 1:
            return "must not be empty"
        return f"must have at least {limits.get('min_length')} {_units(limits)}"
    if kind in ("too_long", "string_too_long"):
        return f"must have at most {limits.get('max_length')} {_units(limits)}"
    return AS_OF_A_MODEL.get(kind) or error.get("msg", "")


def _units(limits: dict[str, Any]) -> str:
    # A constrained text checked after a validator is reported as a "Value" of that many items.
    return "items" if limits.get("field_type") in ("List", "Tuple", "Set", "Frozenset", "Dict") else "characters"
