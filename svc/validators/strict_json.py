"""JSON catalog content (server.json, tool definitions): parsed exactly, then checked by rules.

Parsing is the service's one strict JSON parser, `svc.json_documents.parse_json`,
with its `integers="double"` rule: catalog content is read by any JSON reader (JavaScript
included), so an integer a double cannot hold (`9007199254740993`) is refused like any other
number that would not read back the same; so are NaN, Infinity, `1e400`, `1e-400` and a key
that appears twice in one object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from svc.json_documents import parse_json
from svc.validators.violations import Violation, nul_in_text, unstorable_strings


def validate_json_content(content: str, what: str, rules: Callable[[Any], list[Violation]]) -> list[Violation]:
    """The violations of JSON `content`: a NUL (alone), else what `rules` and `unstorable_strings` find.

    Raises BadRequest when `content` is not JSON or not exactly representable JSON; `what`
    names the content in messages.
    """
    found = nul_in_text(content)
    if found:
        return found
    document = parse_json(content, what, integers="double")
    return rules(document) + unstorable_strings(document)
