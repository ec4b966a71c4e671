"""Rules for configuration JSON: what PostgreSQL can store, size, JSON Merge Patch, JSON Schema."""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

import orjson
import referencing.exceptions
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

# How many violations a 422 lists; a badly wrong document can have thousands.
MAX_REPORTED_VIOLATIONS = 50
VALIDATOR_CACHE_SIZE = 256


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
