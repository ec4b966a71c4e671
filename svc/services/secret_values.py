"""Secret values inside a configuration, addressed by JSON Pointers (RFC 6901): pure functions, no I/O.

A configuration's `secret_paths` say where its secrets are. Stored documents hold the sealed
form (`svc.crypto`) at exactly those paths, so every function here finds secrets by position,
never by what a value looks like. Documents are never changed in place: each function returns a
new document sharing every container it did not have to change.

The write path, for a caller's new document `new` (composed on the MASKED view of the previous
revision, so that a caller without reveal can never turn a secret into a readable value):

    violations = validate_secret_paths(new, paths)            # 422 when not []
    clear = keep_masked(new, previous_clear, previous_paths, paths)
    ... validate `clear` against the JSON Schema ...
    stored = encrypt_at(clear, paths, keyring, configuration_id)

Reads: `mask_at(stored, paths)` needs no key at all; `decrypt_at` for callers who may reveal.
Each revision must keep its own `secret_paths`: they are what says which of its values are sealed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jsonpatch
import orjson
from jsonpointer import JsonPointer, JsonPointerException

from svc.crypto import KeyRing
from svc.errors import Unprocessable
from svc.json_documents import MAX_REPORTED_VIOLATIONS

MASK = "<secret>"
MAX_SECRET_PATHS = 100
MAX_POINTER_LENGTH = 512
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()

Parts = tuple[str, ...]


@lru_cache(maxsize=4096)  # every write compares its secret paths with the stored ones
def parse_pointer(pointer: str) -> Parts:
    """The reference tokens of a JSON Pointer, unescaped (`~1` is `/`, `~0` is `~`); ValueError if malformed."""
    try:
        return tuple(JsonPointer(pointer).parts)
    except JsonPointerException as exc:
        raise ValueError(str(exc)) from None


def resolve(document: Any, parts: Parts) -> Any:
    """The value at `parts`, or `_MISSING`. An array index is `0` or has no leading zero; `-` never resolves."""
    node = document
    for part in parts:
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and _ARRAY_INDEX.fullmatch(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def validate_secret_paths(config: Any, paths: Any) -> list[dict[str, str]]:
    """Each way `paths` is not a valid `secret_paths` for `config`, as `{path, message}`; [] when valid.

    Every entry must be a JSON Pointer that names a value in `config`, not the whole document, not
    twice, and not inside another entry (a secret object is secret as a whole); at most
    MAX_SECRET_PATHS of them, each at most MAX_POINTER_LENGTH characters.
    """
    if not isinstance(paths, list):
        return [{"path": "", "message": "secret_paths must be a list of JSON Pointers"}]
    if len(paths) > MAX_SECRET_PATHS:
        return [{"path": "", "message": f"at most {MAX_SECRET_PATHS} secret paths; a secret object counts once"}]
    found: list[dict[str, str]] = []
    parsed: dict[Parts, str] = {}
    for pointer in paths:
        if not isinstance(pointer, str):
            found.append({"path": str(pointer)[:MAX_POINTER_LENGTH], "message": "a secret path must be a string"})
            continue
        if len(pointer) > MAX_POINTER_LENGTH:
            found.append(
                {"path": pointer[:MAX_POINTER_LENGTH], "message": f"a secret path is at most {MAX_POINTER_LENGTH} characters"}
            )
            continue
        try:
            parts = parse_pointer(pointer)
        except ValueError as exc:
            found.append({"path": pointer, "message": f"'{pointer}' is not a JSON Pointer (RFC 6901): {exc}"})
            continue
        if not parts:
            found.append({"path": pointer, "message": "the whole configuration cannot be secret; name values in it"})
        elif parts in parsed:
            found.append({"path": pointer, "message": f"'{pointer}' is listed more than once"})
        elif resolve(config, parts) is _MISSING:
            found.append({"path": pointer, "message": f"'{pointer}' does not name a value in config"})
        else:
            parsed[parts] = pointer
    for parts, pointer in parsed.items():
        outer = next((parsed[parts[:n]] for n in range(1, len(parts)) if parts[:n] in parsed), None)
        if outer is not None:
            found.append({"path": pointer, "message": f"'{pointer}' is inside '{outer}', which is secret as a whole"})
    return found[:MAX_REPORTED_VIOLATIONS]


def encrypt_at(config: Any, paths: list[str], keyring: KeyRing, configuration_id: str) -> Any:
    """`config` with the value at each secret path sealed under the key ring's first key.

    The paths must have passed `validate_secret_paths`; one that does not resolve is a LookupError,
    never a value silently stored in clear.
    """
    return _rewrite(
        config,
        paths,
        lambda value, path: keyring.seal(value, configuration_id=configuration_id, path=path),
        strict=True,
    )


def decrypt_at(stored: Any, paths: list[str], keyring: KeyRing, configuration_id: str) -> Any:
    """The clear document of a stored one; SecretUnavailable (503) naming the key id when a value cannot be opened."""
    return _rewrite(
        stored, paths, lambda value, path: keyring.open(value, configuration_id=configuration_id, path=path)
    )


def mask_at(document: Any, paths: list[str]) -> Any:
    """`document` (stored or clear) with MASK in place of each secret value; needs no key."""
    return _rewrite(document, paths, lambda value, path: MASK)


def reencrypt(stored: Any, paths: list[str], keyring: KeyRing, configuration_id: str) -> tuple[Any, int]:
    """`stored` with every secret not sealed under the first key sealed again under it, and how many were.

    Secrets already under the first key are left as they are (not even decrypted), so a rerun of an
    interrupted rotation only pays for what is left.
    """
    changed = 0

    def again(value: Any, path: str) -> Any:
        nonlocal changed
        if not keyring.needs_reencryption(value):
            return value
        changed += 1
        clear = keyring.open(value, configuration_id=configuration_id, path=path)
        return keyring.seal(clear, configuration_id=configuration_id, path=path)

    result = _rewrite(stored, paths, again)
    return (result, changed) if changed else (stored, 0)


def keep_masked(new: Any, previous_clear: Any, previous_paths: list[str], paths: list[str]) -> Any:
    """`new` with each MASK at a secret path replaced by the clear value it stands for.

    MASK is accepted only at a path that is secret now and was secret before, where it keeps the
    previous value, so a read-modify-write by a caller who cannot reveal loses nothing. Anywhere
    else it is refused (422 naming the path) rather than stored as the text "<secret>": at a path
    that is not secret (an array item whose mask moved to another index would otherwise seal the
    wrong value), inside a secret object or array, at a path that is newly secret (there is no
    stored secret to keep), or at a path that was secret and no longer is (storing the mask would
    silently lose the secret; keeping the value would reveal it).
    """
    _refuse_stray_masks(new, previous_paths, paths)
    before = set(previous_paths)

    def kept(value: Any, pointer: str) -> Any:
        if value != MASK:
            return value
        previous = resolve(previous_clear, parse_pointer(pointer)) if pointer in before else _MISSING
        if previous is _MISSING:
            raise Unprocessable(
                f"'{pointer}' holds the mask '{MASK}', but there is no stored secret there to keep; send the clear value",
                errors=[{"path": pointer, "message": "no stored secret here for the mask to keep"}],
            )
        return previous

    return _rewrite(new, paths, kept)


_ENCODED_MASK = orjson.dumps(MASK)


def _refuse_stray_masks(document: Any, previous_paths: list[str], paths: list[str]) -> None:
    """422 naming every place where MASK stands anywhere but exactly at a secret path."""
    try:
        if _ENCODED_MASK not in orjson.dumps(document):  # the common case, without a walk in Python
            return
    except orjson.JSONEncodeError:
        pass  # not storable (refused later, naming why); the walk still finds every mask
    allowed = set(paths)
    stray = [pointer for pointer in _pointers_of(document, MASK) if pointer not in allowed]
    if not stray:
        return
    errors = [
        {
            "path": pointer,
            "message": f"'{pointer}' is no longer a secret path: the mask would lose the secret; send its clear "
            "value, or keep the path in secret_paths"
            if pointer in previous_paths
            else f"the mask '{MASK}' is accepted only at a secret path, where it keeps the stored value",
        }
        for pointer in stray[:MAX_REPORTED_VIOLATIONS]
    ]
    raise Unprocessable(
        f"'{stray[0]}' holds the mask '{MASK}' but is not a secret path that keeps a stored value: "
        f"{errors[0]['message']}" + (f" (and {len(stray) - 1} more, listed in errors)" if len(stray) > 1 else ""),
        errors=errors,
    )


def _pointers_of(document: Any, wanted: Any) -> list[str]:
    """The JSON Pointer of every value equal to `wanted` (a string), in document order."""
    found = []
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, pointer = stack.pop()
        if node == wanted and isinstance(node, str):
            found.append(pointer)
        elif isinstance(node, dict):
            stack.extend((child, f"{pointer}/{_escape(key)}") for key, child in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((child, f"{pointer}/{index}") for index, child in reversed(list(enumerate(node))))
    return found


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def within(pointer: str, outer: str) -> bool:
    """Whether `pointer` names `outer` itself or a value inside it (False when either is malformed)."""
    try:
        parts, outer_parts = parse_pointer(pointer), parse_pointer(outer)
    except ValueError:
        return False
    return parts[: len(outer_parts)] == outer_parts


def uncovered(paths: list[str], by: list[str]) -> list[str]:
    """The paths of `paths` not secret under `by`: neither listed in it nor inside a secret it lists.

    `uncovered(previous, new)` are the secrets a write would make clear (a declassification);
    `uncovered(new, previous)` the values it makes secret that were not.
    """
    return [pointer for pointer in paths if not any(within(pointer, outer) for outer in by)]


def seal_earlier(
    stored: Any, paths: list[str], newly_secret: list[str], keyring: KeyRing, configuration_id: str
) -> tuple[Any, list[str]] | None:
    """An earlier revision (`stored`, with its `paths`) with every value at `newly_secret` sealed, and
    its secret paths after that; None when it holds none of them in clear.

    A newly secret path that holds secrets of the revision inside it (an object made secret as a
    whole) replaces them: their values are opened and sealed again with the whole.
    """
    added = [
        pointer for pointer in uncovered(newly_secret, paths)
        if resolve(stored, parse_pointer(pointer)) is not _MISSING
    ]
    if not added:
        return None
    inner = [pointer for pointer in paths if any(within(pointer, outer) for outer in added)]
    clear = decrypt_at(stored, inner, keyring, configuration_id)
    return encrypt_at(clear, added, keyring, configuration_id), [p for p in paths if p not in inner] + added


def masked_diff(source: Any, source_paths: list[str], target: Any, target_paths: list[str]) -> list[dict[str, Any]]:
    """The JSON Patch (RFC 6902) from clear `source` to clear `target` with every secret value masked.

    Secret values never reach the diff: each side is masked first, a secret that changed at the same
    path being marked with a one-off token so the patch still says that the path changed (with MASK
    as its value). Patching by operation path instead would miss secrets in array items that the
    patch moves, since an operation's path is only valid at its step.
    """
    changed_marker = f"<secret changed {secrets.token_hex(16)}>"

    def mark(value: Any, pointer: str) -> Any:
        before = resolve(source, parse_pointer(pointer)) if pointer in source_paths else _MISSING
        return MASK if before is not _MISSING and _same_json(before, value) else changed_marker

    masked_target = _rewrite(target, target_paths, mark)
    patch = jsonpatch.make_patch(mask_at(source, source_paths), masked_target).patch
    return [
        {key: _replace_string(value, changed_marker, MASK) if key == "value" else value for key, value in op.items()}
        for op in patch
    ]


def _same_json(a: Any, b: Any) -> bool:
    # Python's == holds 1 == 1.0 == True; JSON does not.
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _replace_string(value: Any, old: str, new: str) -> Any:
    if value == old:
        return new
    if isinstance(value, dict):
        return {key: _replace_string(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_string(item, old, new) for item in value]
    return value


def _rewrite(
    document: Any, paths: list[str], change: Callable[[Any, str], Any], *, strict: bool = False
) -> Any:
    """`document` with `change(value, pointer)` at each path; only the containers on the way are copied,
    each once. A path that does not resolve is skipped, or a LookupError when `strict`."""
    if not paths:
        return document
    return _rewrite_node(document, _path_tree(tuple(paths)), change, strict)


@lru_cache(maxsize=256)  # bounded in memory by MAX_SECRET_PATHS x MAX_POINTER_LENGTH per entry
def _path_tree(paths: tuple[str, ...]) -> dict[str, Any]:
    """The paths as nested dicts of reference tokens, a leaf being the pointer; shared, never changed."""
    tree: dict[str, Any] = {}
    for pointer in paths:
        parts = parse_pointer(pointer)
        if not parts:
            raise ValueError("the whole document cannot be a secret path")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if isinstance(node, str):
                raise ValueError(f"secret path '{pointer}' is inside another")
        if parts[-1] in node:
            raise ValueError(f"secret path '{pointer}' is listed twice or has another inside it")
        node[parts[-1]] = pointer
    return tree


def _rewrite_node(node: Any, tree: dict[str, Any], change: Callable[[Any, str], Any], strict: bool) -> Any:
    copy: dict[str, Any] | list[Any]
    if isinstance(node, dict):
        copy = dict(node)
    elif isinstance(node, list):
        copy = list(node)
    else:
        copy = {}
    changed = False
    for part, sub in tree.items():
        child = resolve(node, (part,))
        if child is _MISSING:
            if strict:
                raise LookupError(f"secret path '{_first_pointer(sub)}' does not resolve")
            continue
        key: Any = int(part) if isinstance(copy, list) else part
        copy[key] = change(child, sub) if isinstance(sub, str) else _rewrite_node(child, sub, change, strict)
        changed = True
    return copy if changed else node


def _first_pointer(sub: dict[str, Any] | str) -> str:
    while isinstance(sub, dict):
        sub = next(iter(sub.values()))
    return sub


def mask_violations(found: list[dict[str, str]], clear: Any, paths: list[str]) -> list[dict[str, str]]:
    """JSON Schema violations of `clear` that show nothing of its secret values.

    A violation at or inside a secret path is reported at the secret path itself with a fixed
    message: the validator's message would quote the value (`'INNER' is not of type 'integer'`),
    or name the members of a secret object (`'pw', 'user' were unexpected`), and a deeper path
    would name them too. A violation above a secret path quotes the whole object or array it is
    about, secrets included: each secret's Python rendering (what the message quotes) becomes the
    mask's, and a message that still holds any text of a secret (a string, a number, a key inside
    it) is replaced by a fixed one.
    """
    if not paths:
        return found
    secrets_ = [(pointer, parse_pointer(pointer)) for pointer in paths]
    values = {pointer: resolve(clear, parts) for pointer, parts in secrets_}
    masked: list[dict[str, str]] = []
    for violation in found:
        parts = parse_pointer(violation["path"])
        owner = next((pointer for pointer, s in secrets_ if parts[: len(s)] == s), None)
        if owner is not None:
            entry = {"path": owner, "message": SECRET_VIOLATION}
        else:
            inside = [values[pointer] for pointer, s in secrets_ if s[: len(parts)] == parts]
            entry = {**violation, "message": _without_secrets(violation["message"], inside)}
        if entry not in masked:
            masked.append(entry)
    return masked


SECRET_VIOLATION = "the secret value here does not satisfy the schema (the message would show it)"
ABOVE_SECRET_VIOLATION = "this value does not satisfy the schema (the message would show a secret value inside it)"


def _without_secrets(message: str, values: list[Any]) -> str:
    present = [value for value in values if value is not _MISSING]
    for value in sorted(present, key=lambda v: -len(repr(v))):
        message = message.replace(repr(value), repr(MASK))
    if any(text in message for value in present for text in _texts_of(value)):
        return ABOVE_SECRET_VIOLATION
    return message


def _texts_of(value: Any) -> list[str]:
    """Every piece of text a message could show of a secret: its strings, keys and scalars."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *_texts_of(item)) if text]
    if isinstance(value, list):
        return [text for item in value for text in _texts_of(item)]
    if isinstance(value, str):
        return [value] if value else []
    return [repr(value), orjson.dumps(value).decode()]
