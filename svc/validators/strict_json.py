"""A JSON parser that keeps every value exactly as written or refuses the text (400).

Python's `json` module accepts `NaN` and `Infinity`, rounds numbers a double cannot hold
(`1e400` becomes infinity, `1e-400` zero, `123456789012345678901234567890.5` loses digits) and
keeps the last of two equal keys. This parser refuses all of these and names where they are.

A number is kept when the double nearest to it reads back as the same number: its text and
the double's shortest representation are numerically equal. So `0.1`, `1e300` and
`9007199254740992` are kept; `1e400`, `1e-400`, `9007199254740993` and
`18446744073709551616` (which a JSON reader shows as `18446744073709552000`) are refused.

The "data" helper writes the same rule for request bodies in `svc/services/json_documents.py`;
the two are to be merged into one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from svc.errors import BadRequest
from svc.services.secret_values import format_pointer
from svc.validators.violations import Violation, nul_in_text, summary, unstorable_strings, walk


class _Refused:
    """Stands in the parsed tree for a value the parser refused, until its pointer is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def parse_strict_json(text: str, what: str) -> Any:
    """The value of the JSON `text`; raises BadRequest naming the position or pointer when it is not exact JSON.

    `what` names the content in the message (e.g. 'server.json').
    """
    refused: list[_Refused] = []

    def refuse(reason: str) -> _Refused:
        marker = _Refused(reason)
        refused.append(marker)
        return marker

    def number(literal: str) -> Any:
        value = float(literal)
        if math.isinf(value):
            return refuse(f"the number {_shorten(literal)} is too large for a double")
        if Decimal(literal) != Decimal(repr(value)):
            return refuse(
                f"the number {_shorten(literal)} cannot be held exactly by a double (it would read as {value!r})"
            )
        return value if any(c in literal for c in ".eE") else int(literal)

    def constant(literal: str) -> _Refused:
        return refuse(f"{literal} is not a JSON value")

    def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            result[key] = refuse(f"the key {key!r} appears more than once in this object") if key in result else value
        return result

    try:
        document = json.loads(
            text, parse_float=number, parse_int=number, parse_constant=constant, object_pairs_hook=json_object
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise BadRequest(f"{what} nests arrays and objects too deeply to be read") from exc
    if refused:
        found = [Violation(format_pointer(at), n.reason) for at, n in walk(document) if isinstance(n, _Refused)]
        raise BadRequest(f"{what} cannot be read exactly {summary(found)}", errors=[v.as_error() for v in found])
    return document


def validate_json_content(content: str, what: str, rules: Callable[[Any], list[Violation]]) -> list[Violation]:
    """The violations of JSON `content`: a NUL (alone), else what `rules` and `unstorable_strings` find.

    Raises BadRequest when `content` is not JSON or not exactly representable JSON; `what`
    names the content in messages.
    """
    found = nul_in_text(content)
    if found:
        return found
    document = parse_strict_json(content, what)
    return rules(document) + unstorable_strings(document)


def _shorten(literal: str) -> str:
    return literal if len(literal) <= 40 else f"{literal[:20]}…{literal[-10:]}"
