"""A closed JSON Schema engine: user-supplied schemas reach nothing outside themselves, and one
document's validation has a bounded cost.

- No `$ref` is ever retrieved: the registry a validator resolves references in holds the schema
  itself and the meta-schemas bundled with `jsonschema`, and its retrieve function refuses. Every
  `$ref` and `$dynamicRef` is looked up when the schema is checked, so a schema naming anything
  else (http, https, file, a pointer to nowhere) is refused before it is stored.
- `pattern`, `patternProperties` (also where `additionalProperties` and `unevaluatedProperties`
  consult it) and the `regex` format run on RE2, whose matching time is linear in the text.
  A pattern RE2 cannot compile (backreferences, lookaround) is refused.
- A schema has at most MAX_SCHEMA_BYTES as JSON and MAX_SCHEMA_DEPTH levels of nesting; one
  validation applies at most MAX_VALIDATION_STEPS keywords (a few `allOf`s of two `$ref`s each
  to the next definition would otherwise apply 2^n of them); `uniqueItems` compares by hash.

The bounds and why they were chosen are in docs/security.md ("A closed schema engine").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import cache, lru_cache
from typing import Any

import orjson
import re2
import referencing
import referencing.exceptions
from jsonschema import FormatChecker, ValidationError, validators
from jsonschema.exceptions import SchemaError
from jsonschema._utils import extras_msg
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing._core import Resolver
from referencing.jsonschema import lookup_recursive_ref, specification_with

MAX_SCHEMA_BYTES = 256 * 1024
MAX_SCHEMA_DEPTH = 64
MAX_VALIDATION_STEPS = 200_000
PATTERN_CACHE_SIZE = 1024

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's 422, not a line on stderr


class RefusedSchema(ValueError):
    """A schema the engine will not run; `parts` locate the offending place, the message says why."""

    def __init__(self, parts: list[str | int], message: str) -> None:
        super().__init__(message)
        self.parts = parts
        self.message = message


class TooCostly(Exception):
    """Validating this document against this schema would apply more than MAX_VALIDATION_STEPS keywords."""


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A validator for `schema` on the closed engine; raises jsonschema's SchemaError when `schema` breaks
    its meta-schema, RefusedSchema when it is too large, names what it may not reach or a pattern RE2
    cannot run."""
    _check_size(schema)
    cls = _closed(validators.validator_for(schema))
    try:
        cls.check_schema(schema, format_checker=cls.FORMAT_CHECKER)
    except SchemaError as exc:
        if isinstance(exc.cause, _UnsupportedPattern):  # the meta-schema's `format: regex`, said with RE2's reason
            raise RefusedSchema(list(exc.absolute_path), str(exc.cause)) from None
        raise
    registry = referencing.Registry(retrieve=_refuse_retrieval)
    validator = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    _check_subschemas(schema, cls)
    return validator


def errors(validator: Validator, document: Any) -> list[ValidationError]:
    """Every error of `document` under a validator from `compile_schema`; raises TooCostly past the
    step budget."""
    token = _budget.set(_Budget(MAX_VALIDATION_STEPS))
    try:
        return list(validator.iter_errors(document))
    finally:
        _budget.reset(token)


# --- references --------------------------------------------------------------------------------


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)


def _check_subschemas(schema: dict[str, Any], cls: type[Validator]) -> None:
    """Look up every reference and compile every pattern of every subschema, each reference in its
    subschema's base URI, as the validator will resolve it."""
    places = _places(schema)
    specification = specification_with(cls.ID_OF(cls.META_SCHEMA) or "urn:unknown-dialect")
    root = specification.create_resource(schema)
    resolver = SPECIFICATIONS.combine(referencing.Registry(retrieve=_refuse_retrieval)).resolver_with_root(root)
    stack = [(root, resolver)]
    while stack:
        resource, outer = stack.pop()
        scope = outer.in_subresource(resource)
        contents = resource.contents
        if isinstance(contents, dict):
            where = places.get(id(contents), [])
            _check_references(contents, scope, where)
            _check_patterns(contents, where)
        stack.extend((subresource, scope) for subresource in resource.subresources())


def _check_references(subschema: dict[str, Any], resolver: Resolver[Any], where: list[str | int]) -> None:
    for keyword in ("$ref", "$dynamicRef"):
        reference = subschema.get(keyword)
        if not isinstance(reference, str):
            continue
        try:
            resolver.lookup(reference)
        except referencing.exceptions.Unresolvable:
            raise RefusedSchema(
                [*where, keyword],
                f"the {keyword} {reference!r} cannot be resolved: it is not inside the schema or a bundled "
                "meta-schema, and references are never retrieved",
            ) from None


def _places(schema: Any) -> dict[int, list[str | int]]:
    """The path to every object of `schema`, by identity (subresources do not carry their path)."""
    found: dict[int, list[str | int]] = {}
    stack: list[tuple[Any, list[str | int]]] = [(schema, [])]
    while stack:
        node, parts = stack.pop()
        if isinstance(node, dict):
            found[id(node)] = parts
            stack.extend((value, [*parts, key]) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, [*parts, index]) for index, value in enumerate(node))
    return found


def _check_size(schema: dict[str, Any]) -> None:
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise RefusedSchema([], f"the schema nests too deeply to be checked (over {MAX_SCHEMA_DEPTH} levels)")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    size = len(orjson.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise RefusedSchema([], f"the schema is {size} bytes as JSON; the limit is {MAX_SCHEMA_BYTES} bytes")


# --- patterns ----------------------------------------------------------------------------------


class _UnsupportedPattern(ValueError):
    pass


@lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _re2(pattern: str) -> re2._Regexp:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise _UnsupportedPattern(
            f"the pattern {pattern!r} cannot run on the linear-time engine (RE2): {reason}"
        ) from None


def _check_patterns(subschema: dict[str, Any], where: list[str | int]) -> None:
    pattern = subschema.get("pattern")
    found = [(["pattern"], pattern)] if isinstance(pattern, str) else []
    properties = subschema.get("patternProperties")
    if isinstance(properties, dict):
        found += [(["patternProperties", key], key) for key in properties]
    for parts, text in found:
        try:
            _re2(text)
        except _UnsupportedPattern as exc:
            raise RefusedSchema([*where, *parts], str(exc)) from None


def _matches(pattern: str, text: str) -> bool:
    return _re2(pattern).search(text) is not None


def _pattern(validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Validator, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Validator, additional: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = {
        key for key in instance if key not in properties and not any(_matches(pattern, key) for pattern in patterns)
    }
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            listed = ", ".join(repr(each) for each in sorted(patterns))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {listed}")
        else:
            error = "Additional properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(extras, key=str)))


def _unevaluated_properties(
    validator: Validator, unevaluated: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = set(_evaluated_keys(validator, instance, schema))
    invalid = [
        key
        for key in instance
        if key not in evaluated and not validator.evolve(schema=unevaluated).is_valid(instance[key])
    ]
    if not invalid:
        return
    if unevaluated is False:
        error = "Unevaluated properties are not allowed (%s %s unexpected)"
        yield ValidationError(error % extras_msg(sorted(invalid, key=str)))
    else:
        error = "Unevaluated properties are not valid under the given schema (%s %s unevaluated and invalid)"
        yield ValidationError(error % extras_msg(invalid))


def _evaluated_keys(validator: Validator, instance: dict[str, Any], schema: Any) -> list[str]:
    """The keys of `instance` that `schema` evaluates (drafts 2019-09 and 2020-12), patterns on RE2."""
    if validator.is_type(schema, "boolean"):
        return []
    keys: list[str] = []
    references = [validator._resolver.lookup(schema[k]) for k in ("$ref", "$dynamicRef") if k in schema]
    if "$recursiveRef" in schema:
        references.append(lookup_recursive_ref(validator._resolver))
    for resolved in references:
        inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
        keys += _evaluated_keys(inner, instance, resolved.contents)
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys += properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if keyword in schema:
            keys += (key for key, value in instance.items() if validator.evolve(schema=schema[keyword]).is_valid(value))
    for pattern in schema.get("patternProperties", {}):
        keys += (key for key in instance if _matches(pattern, key))
    for key, subschema in schema.get("dependentSchemas", {}).items():
        if key in instance:
            keys += _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if validator.evolve(schema=subschema).is_valid(instance):
                keys += _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys += _evaluated_keys(validator, instance, schema["if"])
            keys += _evaluated_keys(validator, instance, schema.get("then", True))
        else:
            keys += _evaluated_keys(validator, instance, schema.get("else", True))
    return keys


# --- uniqueItems ---------------------------------------------------------------------------------


def _unique_items(validator: Validator, unique: Any, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if unique and validator.is_type(instance, "array"):
        seen = set()
        for item in instance:
            key = _comparable(item)
            if key in seen:
                yield ValidationError(f"{instance!r} has non-unique elements")
                return
            seen.add(key)


def _comparable(value: Any) -> Any:
    """A hashable stand-in equal for JSON values JSON Schema calls equal: 1 and 1.0 alike, true and 1 not."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, dict):
        return ("object", frozenset((key, _comparable(item)) for key, item in value.items()))
    return ("array", tuple(_comparable(item) for item in value))


# --- the validator classes -----------------------------------------------------------------------


class _Budget:
    __slots__ = ("left",)

    def __init__(self, steps: int) -> None:
        self.left = steps


_budget: ContextVar[_Budget | None] = ContextVar("json_schema_budget", default=None)

Keyword = Callable[[Validator, Any, Any, Any], Iterator[ValidationError] | None]

_RE2_KEYWORDS: dict[str, Keyword] = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
    "uniqueItems": _unique_items,
}


def _counted(keyword: Keyword) -> Keyword:
    """`keyword`, charged one step of the running validation's budget each time it is applied."""

    def charged(validator: Validator, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError] | None:
        budget = _budget.get()
        if budget is not None:
            budget.left -= 1
            if budget.left < 0:
                raise TooCostly
        return keyword(validator, value, instance, schema)

    return charged


def _is_regex(instance: object) -> bool:
    return not isinstance(instance, str) or _re2(instance) is not None


@cache
def _closed(base: type[Validator]) -> type[Validator]:
    """`base` (one draft's validator class) with the RE2 keywords and format, every keyword charged."""
    keywords = {name: _RE2_KEYWORDS.get(name, function) for name, function in base.VALIDATORS.items()}
    formats = FormatChecker(formats=())
    for name, (check, raises) in base.FORMAT_CHECKER.checkers.items():
        formats.checks(name, raises)(check)
    formats.checks("regex", raises=_UnsupportedPattern)(_is_regex)
    return validators.extend(
        base, {name: _counted(function) for name, function in keywords.items()}, format_checker=formats
    )
