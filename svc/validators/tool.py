"""A tool definition: the JSON object `{name, description, input_schema}` a client hands Claude.

The shape is the Claude Messages API's tool definition (schema `Tool` of the API reference,
https://docs.claude.com/en/api/messages, and the guide "Define tools"): `name` matches `^[a-zA-Z0-9_-]{1,64}$`, `description` says
what the tool does, `input_schema` is a JSON Schema whose `type` is `"object"` (a tool takes an
object of arguments). The catalog asks a little more than the API, as the SPEC does: all three
keys are required, no other key is allowed (a misspelt `inputSchema` would otherwise pass
unseen), the description is not blank, and `name` equals the item's name.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from svc.json_documents import InvalidSchema, check_schema
from svc.validators.strict_json import validate_json_content
from svc.validators.violations import Violation, kind_of, same_name, string_field, unknown_keys

KEYS = ("name", "description", "input_schema")
NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def validate_tool(name: str, content: str) -> list[Violation]:
    """Every way `content` fails to be the tool definition of the item `name`; [] when it is one.

    Raises BadRequest when `content` is not JSON (or not exactly representable JSON).
    """
    return validate_json_content(content, "the tool definition", lambda document: _tool_rules(name, document))


def _tool_rules(name: str, document: Any) -> list[Violation]:
    if not isinstance(document, dict):
        shape = "a tool definition is a JSON object {name, description, input_schema}"
        return [Violation("", f"{shape}, not {kind_of(document)}")]
    return [
        *unknown_keys(document, KEYS, "", "a tool definition"),
        *_name(document, name),
        *string_field(document, "description", "", required=True, non_blank=True),
        *_input_schema(document),
    ]


def _name(document: dict[str, Any], item_name: str) -> list[Violation]:
    found = string_field(document, "name", "", required=True)
    if found:
        return found
    value = document["name"]
    if not NAME.fullmatch(value):
        found.append(Violation("/name", "name must be 1-64 letters, digits, '_' or '-'"))
    return found + same_name(value, item_name, "/name")


def _input_schema(document: dict[str, Any]) -> list[Violation]:
    if "input_schema" not in document:
        return [Violation("/input_schema", "input_schema is required")]
    schema = document["input_schema"]
    if not isinstance(schema, dict):
        return [Violation("/input_schema", f"input_schema must be a JSON Schema object, not {kind_of(schema)}")]
    try:
        check_schema(schema)
    except InvalidSchema as exc:
        return [Violation("/input_schema" + error["path"], error["message"]) for error in exc.errors]
    except (RecursionError, orjson.JSONEncodeError):  # checking (or caching) a schema recurses once per level
        return [Violation("/input_schema", "input_schema nests too deeply to be checked")]
    if schema.get("type") != "object":
        message = 'input_schema must have "type": "object" (a tool takes an object of arguments)'
        return [Violation("/input_schema/type", message)]
    return []
