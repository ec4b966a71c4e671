"""Rules for configuration JSON: exact parsing, what PostgreSQL can store, size, JSON Merge Patch, JSON Schema."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from decimal import Decimal
from threading import Lock
from typing import Any, Literal

import orjson
import referencing.exceptions
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from svc.errors import BadRequest
from svc.json_schema import MAX_VALIDATION_STEPS, RefusedSchema, TooCostly, compile_schema, errors

# How many violations a 422 lists; a badly wrong document can have thousands.
MAX_REPORTED_VIOLATIONS = 50
VALIDATOR_CACHE_SIZE = 256


# Integers orjson writes (and reads back) exactly, and jsonb stores exactly: the signed and
# unsigned 64-bit ranges.
MIN_EXACT_INTEGER = -(2**63)
MAX_EXACT_INTEGER = 2**64 - 1
_LONGEST_EXACT_INTEGER = len(str(MIN_EXACT_INTEGER))
DOUBLE_MAX = "±1.7976931348623157e308"

IntegerRule = Literal["int64", "double"]


class _Refused:
    """Stands in the parsed value for one that may not be kept, until its place is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def parse_json(text: bytes | str, what: str = "the request body", *, integers: IntegerRule = "int64") -> Any:
    """Parse JSON text (RFC 8259) so that every value is kept exactly as written, or raise BadRequest.

    The one JSON parser for what the service keeps: request bodies, `?contains=`, catalog
    content. A number is kept when the value it denotes is the value that will be stored and
    served back:

    * with `integers="int64"` (what PostgreSQL jsonb and the service's JSON encoder keep
      digit for digit), an integer (no fraction, no exponent) from -2^63 to 2^64-1;
    * with `integers="double"` (content read by any JSON reader, JavaScript included), an
      integer only under the rule for other numbers;
    * any other number when the double nearest to it, written back in its shortest form,
      denotes the same decimal value: `0.1`, `1.0`, `1e2`, `5e-324` and
      `1.7976931348623157e308` are kept (as 0.1, 1.0, 100.0, …); -0 is the number zero (PostgreSQL
      numeric has no signed zero).

    Refused, with a 400 naming each place as a JSON Pointer (RFC 6901) in `errors`: NaN,
    Infinity and -Infinity (not JSON, RFC 8259 §6), numbers beyond a double (`1e400`), numbers
    a double would change (`1e-400` would become 0, `123456789012345678901234567890.5` and
    `9007199254740993.0` would lose digits), integers beyond the integer rule, and a key that
    appears twice in one object (RFC 8259 §4: one of the values would be dropped).
    """
    refused: list[_Refused] = []

    def refuse(reason: str) -> _Refused:
        marker = _Refused(reason)
        refused.append(marker)
        return marker

    def fraction(number: str) -> Any:
        value = float(number)
        if not math.isfinite(value):
            return refuse(f"the number {_shorten(number)} is too large for a double (beyond {DOUBLE_MAX})")
        shortest = repr(value)
        if shortest != number and Decimal(shortest) != Decimal(number):
            return refuse(f"the number {_shorten(number)} cannot be held exactly by a double (it would read as {value!r})")
        return value

    def integer(number: str) -> Any:
        if integers == "double":
            value = fraction(number)
            return value if isinstance(value, _Refused) else int(number)
        if len(number) <= _LONGEST_EXACT_INTEGER and MIN_EXACT_INTEGER <= int(number) <= MAX_EXACT_INTEGER:
            return int(number)
        return refuse(f"the number {_shorten(number)} is an integer beyond 64 bits (-2^63 to 2^64-1)")

    def constant(name: str) -> Any:
        return refuse(f"{name} is not a JSON value (RFC 8259 §6); send it as a string or null")

    def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) < len(pairs):
            found = {}
            for key, value in pairs:
                found[key] = refuse(f"the key {key!r} appears more than once in this object") if key in found else value
        return found

    try:
        source = text.decode("utf-8") if isinstance(text, bytes) else text
        value = json.loads(
            source, parse_int=integer, parse_float=fraction, parse_constant=constant, object_pairs_hook=json_object
        )
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError:
        raise BadRequest(f"{what} nests arrays and objects too deeply to be read") from None
    if refused:
        errors = [{"path": format_pointer(path), "message": marker.reason} for path, marker in _refused_in(value)]
        first = errors[0]
        more = f" (and {len(errors) - 1} more, listed in errors)" if len(errors) > 1 else ""
        raise BadRequest(f"{what} cannot be read exactly: at '{first['path']}': {first['message']}{more}", errors=errors)
    return value


def _refused_in(value: Any) -> list[tuple[list[str | int], _Refused]]:
    """The path of keys and indexes to every refused value, in document order."""
    found = []
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Refused):
            found.append((path, node))
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((child, [*path, key]) for key, child in reversed(list(items)))
    return found


def _shorten(number: str) -> str:
    return number if len(number) <= 40 else f"{number[:20]}…({len(number)} characters)"


class UnstorableJson(ValueError):
    """A value jsonb cannot hold; the message says why."""


def encode(value: Any) -> bytes:
    """The JSON text of `value` as it will be stored; raises UnstorableJson when jsonb cannot hold it."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        # Lone surrogates and integers beyond 64 bits, which orjson (and so the driver) refuses.
        raise UnstorableJson(str(exc)) from exc
    if b"\\u0000" in text and _contains_nul(value):
        raise UnstorableJson("text in JSON cannot contain the NUL character (\\u0000)")
    return text


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON Merge Patch (RFC 7396) to `target`, returning a new value.

    An object patch merges key by key (null deletes the key, objects merge recursively);
    any other patch replaces the target wholesale.
    """
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class _ValidatorCache:
    """Compiled validators by schema text: configurations are written far more often than schemas change."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._validators: OrderedDict[bytes, Validator] = OrderedDict()
        self._lock = Lock()

    def get(self, schema: dict[str, Any]) -> Validator:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        with self._lock:
            validator = self._validators.get(key)
            if validator is not None:
                self._validators.move_to_end(key)
                return validator
        validator = compile_schema(schema)
        with self._lock:
            self._validators[key] = validator
            if len(self._validators) > self.size:
                self._validators.popitem(last=False)
        return validator


_validators = _ValidatorCache(VALIDATOR_CACHE_SIZE)


class InvalidSchema(ValueError):
    """The JSON Schema itself is not valid; `errors` says where."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchema unless `schema` is a valid JSON Schema (of the draft its `$schema` names)
    that the closed engine (svc.json_schema) runs: no reference outside itself, patterns RE2 compiles,
    within its size bounds."""
    try:
        _validators.get(schema)
    except SchemaError as exc:
        raise _invalid(list(exc.absolute_path), exc.message) from exc
    except RefusedSchema as exc:
        raise _invalid(exc.parts, exc.message) from exc


def _invalid(parts: list[str | int], message: str) -> InvalidSchema:
    path = format_pointer(parts)
    return InvalidSchema(f"schema is not a valid JSON Schema: at '{path}': {message}", [{"path": path, "message": message}])


def violations(schema: dict[str, Any], document: Any) -> list[dict[str, str]]:
    """Each way `document` breaks `schema`, as `{path, message}` with a JSON Pointer path; [] when valid.

    The schema must have passed `check_schema`. A `$ref` that cannot be resolved (references are
    never retrieved), one that loops forever, or a validation that would apply more keywords than
    the engine allows is reported as a violation at the root.
    """
    validator = _validators.get(schema)
    try:
        found = sorted(errors(validator, document), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    except referencing.exceptions.Unresolvable as exc:
        return [{"path": "", "message": f"the schema's reference cannot be resolved: {exc}"}]
    except RecursionError:
        return [{"path": "", "message": "the schema refers to itself without end"}]
    except TooCostly:
        message = f"validating this document against the schema takes more than {MAX_VALIDATION_STEPS} steps"
        return [{"path": "", "message": message}]
    return [{"path": format_pointer(e.absolute_path), "message": e.message} for e in found[:MAX_REPORTED_VIOLATIONS]]


def format_pointer(parts: Any) -> str:
    """A JSON Pointer (RFC 6901) for a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
