"""Rules for configuration JSON: exact parsing, what PostgreSQL can store, size, JSON Merge Patch, JSON Schema."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from decimal import Decimal
from threading import Lock
from typing import Any

import orjson
import referencing.exceptions
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from svc.errors import BadRequest

# How many violations a 422 lists; a badly wrong document can have thousands.
MAX_REPORTED_VIOLATIONS = 50
VALIDATOR_CACHE_SIZE = 256


# Integers orjson writes (and reads back) exactly: the signed and unsigned 64-bit ranges.
MIN_EXACT_INTEGER = -(2**63)
MAX_EXACT_INTEGER = 2**64 - 1
_LONGEST_EXACT_INTEGER = len(str(MIN_EXACT_INTEGER))


class _Refused:
    """Stands in the parsed value for a number that may not be stored, until its place is known."""

    __slots__ = ("text", "reason")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text if len(text) <= 40 else f"{text[:24]}…({len(text)} characters)"
        self.reason = reason


def parse_json(text: bytes | str, what: str = "the request body") -> Any:
    """Parse JSON text (RFC 8259) so that every number keeps its exact value, or raise BadRequest.

    A number is kept when the value it denotes is the value that will be stored and served:

    * an integer (no fraction, no exponent) from -2^63 to 2^64-1, which is kept digit for digit;
    * any other number when the double nearest to it, written back in its shortest form, denotes
      the same decimal value: `0.1`, `1.0`, `1e2`, `5e-324` and `1.7976931348623157e308` are kept
      (as 0.1, 1.0, 100.0, …); -0 is the number zero and is kept as 0.

    Refused, with a 400 whose detail names the place as a JSON Pointer (RFC 6901): NaN, Infinity
    and -Infinity (not JSON numbers, RFC 8259 §6), numbers beyond the range of a double (`1e400`),
    numbers a double would change (`1e-400` would become 0, `123456789012345678901234567890.5` and
    2^53+1 written as `9007199254740993.0` would lose digits), and integers beyond 64 bits.
    """
    refused: list[_Refused] = []

    def refuse(number: str, reason: str) -> _Refused:
        marker = _Refused(number, reason)
        refused.append(marker)
        return marker

    def integer(number: str) -> Any:
        value = int(number) if len(number) <= _LONGEST_EXACT_INTEGER else None
        if value is None or not MIN_EXACT_INTEGER <= value <= MAX_EXACT_INTEGER:
            return refuse(number, "is an integer beyond 64 bits (-2^63 to 2^64-1), which cannot be stored exactly")
        return value

    def fraction(number: str) -> Any:
        value = float(number)
        if not math.isfinite(value):
            return refuse(number, "is beyond the range of a double (±1.7976931348623157e308)")
        if Decimal(repr(value)) != Decimal(number):
            return refuse(number, f"cannot be stored exactly: a double would make it {value!r}")
        return value

    def constant(name: str) -> Any:
        return refuse(name, "is not a JSON number (RFC 8259 §6); send it as a string or null")

    try:
        source = text.decode("utf-8") if isinstance(text, bytes) else text
        value = json.loads(source, parse_int=integer, parse_float=fraction, parse_constant=constant)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply to be parsed") from None
    if refused:
        first = refused[0]
        pointer = _pointer(_path_to(value, first))
        message = f"{first.text} {first.reason}"
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        detail = f"{what}: at '{pointer or '/'}': {message}{more}"
        raise BadRequest(detail, errors=[{"path": pointer, "message": message}])
    return value


def _path_to(value: Any, target: _Refused) -> list[str | int]:
    """The keys and indexes that lead from `value` to `target` (found by identity)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((child, [*path, key]) for key, child in reversed(list(items)))
    return []


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
        validator = _compile(schema)
        with self._lock:
            self._validators[key] = validator
            if len(self._validators) > self.size:
                self._validators.popitem(last=False)
        return validator


def _compile(schema: dict[str, Any]) -> Validator:
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


_validators = _ValidatorCache(VALIDATOR_CACHE_SIZE)


class InvalidSchema(ValueError):
    """The JSON Schema itself is not valid; `errors` says where."""

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchema unless `schema` is a valid JSON Schema (of the draft its `$schema` names)."""
    try:
        _validators.get(schema)
    except SchemaError as exc:
        path = _pointer(exc.absolute_path)
        raise InvalidSchema(
            f"schema is not a valid JSON Schema: at '{path}': {exc.message}",
            [{"path": path, "message": exc.message}],
        ) from exc


def violations(schema: dict[str, Any], document: Any) -> list[dict[str, str]]:
    """Each way `document` breaks `schema`, as `{path, message}` with a JSON Pointer path; [] when valid.

    The schema must have passed `check_schema`. A `$ref` that cannot be resolved (remote
    references are never fetched) or that loops forever is reported as a violation at the root.
    """
    validator = _validators.get(schema)
    try:
        errors = sorted(validator.iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    except referencing.exceptions.Unresolvable as exc:
        return [{"path": "", "message": f"the schema's reference cannot be resolved: {exc}"}]
    except RecursionError:
        return [{"path": "", "message": "the schema refers to itself without end"}]
    return [{"path": _pointer(e.absolute_path), "message": e.message} for e in errors[:MAX_REPORTED_VIOLATIONS]]


def _pointer(parts: Any) -> str:
    """A JSON Pointer (RFC 6901) for a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
