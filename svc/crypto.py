"""AES-256-GCM for secret values inside configurations: the key ring and the stored form of a secret.

No I/O here: the key ring is built from text (`SVC_SECRET_KEYS` or the key file, see
`svc.secret_keys`), and a secret is sealed into, and opened from, one JSON string.

The stored form is one string, `svc-secret:v1:<key id>:<nonce>:<ciphertext>` (standard base64,
the ciphertext ends with the 16-byte GCM tag). It is never recognised by its shape: a value is
treated as sealed only because it sits at one of its configuration's `secret_paths`, where every
value written is sealed, whatever it looks like. So a user who writes that very text at a
non-secret path stores a plain string that is never opened, and one who writes it at a secret
path gets it sealed like any other value. A string (not an object) also keeps `config @> ...`
(the `?contains=` filter) from matching the structure of a sealed value: only its exact text,
which no API response shows, could match it.

The sealed plaintext is the clear value's JSON text, so any JSON value (string, number, object,
...) can be secret and comes back exactly as it went in; it is padded with spaces to a multiple of
16 bytes so the ciphertext does not tell a password's exact length. The associated data binds the
format version, the key id, the configuration id and the JSON Pointer of the value: a ciphertext
copied to another configuration or another path fails authentication.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from svc.errors import SecretUnavailable

KEY_BYTES = 32
NONCE_BYTES = 12
PAD_TO = 16
VERSION = "v1"
PREFIX = f"svc-secret:{VERSION}:"
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_SEALED = re.compile(re.escape(PREFIX) + r"([A-Za-z0-9_.-]{1,32}):([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


class InvalidSecretKeys(ValueError):
    """The key ring text is malformed; the message names the entry (by position and id), never a key."""


@dataclass(frozen=True)
class Sealed:
    """The parts of a stored secret."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    """Keys by id: the first encrypts, every one decrypts. Never shows key material (not even in repr)."""

    def __init__(self, keys: list[tuple[str, bytes]], *, kept_in: str = "SVC_SECRET_KEYS") -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.primary_id: str | None = keys[0][0] if keys else None
        self.kept_in = kept_in  # where an operator adds a missing key, for the messages

    @classmethod
    def parse(cls, text: str, *, source: str = "SVC_SECRET_KEYS") -> KeyRing:
        """Parse `id:base64key` entries separated by commas (or newlines, in a key file);
        raise InvalidSecretKeys naming the bad entry."""
        entries = re.split(r"[,\n]", text.strip())
        if entries == [""]:
            raise InvalidSecretKeys(f"{source} is empty: give at least one id:base64key entry")
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(entries, start=1):
            keys.append(_parse_entry(entry.strip(), f"{source} entry {position}"))
        seen: set[str] = set()
        for key_id, _ in keys:
            if key_id in seen:
                raise InvalidSecretKeys(f"{source}: key id '{key_id}' appears more than once")
            seen.add(key_id)
        return cls(keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r})"

    def seal(self, value: Any, *, configuration_id: str, path: str) -> str:
        """The stored form of `value` (any JSON value) at `path` of the configuration, under the first key."""
        if self.primary_id is None:
            raise SecretUnavailable(
                "no secret key is configured, so secret values cannot be stored: "
                "set SVC_SECRET_KEYS to id:base64key (32 random bytes), see the README"
            )
        text = orjson.dumps(value)
        text += b" " * (-len(text) % PAD_TO)
        nonce = os.urandom(NONCE_BYTES)
        aad = _associated_data(self.primary_id, configuration_id, path)
        ciphertext = self._ciphers[self.primary_id].encrypt(nonce, text, aad)
        return f"{PREFIX}{self.primary_id}:{_b64(nonce)}:{_b64(ciphertext)}"

    def open(self, stored: Any, *, configuration_id: str, path: str) -> Any:
        """The clear value sealed in `stored`; SecretUnavailable when it cannot be, never a wrong value."""
        sealed = parse_sealed(stored)
        where = f"the secret at '{path}' of configuration {configuration_id}"
        if sealed is None:
            raise SecretUnavailable(f"{where} is not in the encrypted form; it cannot be read")
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise SecretUnavailable(
                f"{where} is encrypted with key '{sealed.key_id}', which is not in the key ring "
                f"(known: {', '.join(self._ciphers) or 'none'}); add it to {self.kept_in}"
            )
        aad = _associated_data(sealed.key_id, configuration_id, path)
        try:
            text = cipher.decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise SecretUnavailable(
                f"{where} fails authentication with key '{sealed.key_id}': "
                "it was altered, copied from elsewhere, or the key with that id is not the one that encrypted it"
            ) from None
        return orjson.loads(text)

    def needs_reencryption(self, stored: Any) -> bool:
        """True unless `stored` is sealed under the first key (cheap: nothing is decrypted)."""
        sealed = parse_sealed(stored)
        return sealed is None or sealed.key_id != self.primary_id


def parse_sealed(stored: Any) -> Sealed | None:
    """The parts of a stored secret, or None when `stored` is not in the stored form."""
    match = _SEALED.fullmatch(stored) if isinstance(stored, str) else None
    if match is None:
        return None
    try:
        nonce = base64.b64decode(match[2], validate=True)
        ciphertext = base64.b64decode(match[3], validate=True)
    except binascii.Error:
        return None
    if len(nonce) != NONCE_BYTES:
        return None
    return Sealed(match[1], nonce, ciphertext)


def new_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry (32 random bytes) for SVC_SECRET_KEYS or the key file."""
    if not KEY_ID.fullmatch(key_id):
        raise InvalidSecretKeys(f"key id '{key_id}' must be 1-32 characters of A-Z a-z 0-9 _ . -")
    return f"{key_id}:{_b64(os.urandom(KEY_BYTES))}"


def _parse_entry(entry: str, where: str) -> tuple[str, bytes]:
    key_id, colon, encoded = entry.partition(":")
    key_id = key_id.strip()
    if not colon:
        # The entry is not shown: it may be a bare key.
        raise InvalidSecretKeys(f"{where}: expected id:base64key")
    if not KEY_ID.fullmatch(key_id):
        raise InvalidSecretKeys(f"{where}: the key id must be 1-32 characters of A-Z a-z 0-9 _ . -")
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidSecretKeys(f"{where} ('{key_id}'): the key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise InvalidSecretKeys(
            f"{where} ('{key_id}'): the key is {len(key)} bytes; AES-256 needs exactly {KEY_BYTES} "
            "(e.g. `python -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())'`)"
        )
    return key_id, key


def _associated_data(key_id: str, configuration_id: str, path: str) -> bytes:
    # A JSON array: an unambiguous encoding of the parts, whatever characters the path holds.
    return orjson.dumps(["svc-secret", VERSION, key_id, configuration_id, path])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
