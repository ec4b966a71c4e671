"""Secret values: AES-256-GCM sealing, key ring, JSON Pointers (RFC 6901), masking and the key file.

Pure and fast: no database, no server.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from svc.config import Settings
from svc.crypto import InvalidSecretKeys, KeyRing, new_key_entry, parse_sealed
from svc.errors import SecretUnavailable, Unavailable, Unprocessable
from svc.json_documents import format_pointer
from svc.secret_keys import load_or_create_key_file, secret_key_ring
from svc.services.secret_values import (
    MASK,
    decrypt_at,
    encrypt_at,
    keep_masked,
    mask_at,
    masked_diff,
    parse_pointer,
    reencrypt,
    resolve,
    validate_secret_paths,
)

CONFIGURATION = "01JCONFIGURATION0000000000"
OTHER_CONFIGURATION = "01JOTHERCONFIGURATION00000"
KEY_1 = new_key_entry("k1")
KEY_2 = new_key_entry("k2")


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing.parse(KEY_1)


def assert_same_json(actual: Any, expected: Any) -> None:
    # == would hold 1 == 1.0 == True; the JSON text tells them apart.
    assert orjson.dumps(actual) == orjson.dumps(expected)


def flip_bit(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 1
    return bytes(changed)


def clear_text_absent(stored: Any, *values: Any) -> bool:
    text = orjson.dumps(stored)
    return not any(orjson.dumps(v).strip(b'"') in text for v in values)


@pytest.mark.parametrize(
    "value",
    [
        "hunter2",
        "",
        "pässwörd ✓ \"quoted\" \\ /",
        0,
        -17,
        2**63 - 1,
        1.0,
        0.1,
        1e300,
        True,
        False,
        None,
        [],
        {},
        {"user": "app", "password": "s3cr3t", "port": 5432, "tls": {"ca": ["x", 1.5]}},
    ],
)
def test_every_json_value_round_trips_exactly(ring: KeyRing, value: Any) -> None:
    config = {"db": {"password": value, "host": "db.internal"}}
    stored = encrypt_at(config, ["/db/password"], ring, CONFIGURATION)

    sealed = stored["db"]["password"]
    assert isinstance(sealed, str) and parse_sealed(sealed).key_id == "k1"
    assert stored["db"]["host"] == "db.internal"
    assert config["db"]["password"] is value, "the caller's document is not changed"
    assert_same_json(decrypt_at(stored, ["/db/password"], ring, CONFIGURATION), config)


def test_no_clear_text_and_no_length_in_the_stored_form(ring: KeyRing) -> None:
    stored = [ring.seal(f"pw-{'x' * n}", configuration_id=CONFIGURATION, path="/p") for n in range(1, 11)]

    assert all("pw-" not in s for s in stored)
    assert len({len(parse_sealed(s).ciphertext) for s in stored}) == 1, "padded: a length does not show"
    assert len({parse_sealed(s).nonce for s in stored}) == len(stored), "a fresh nonce each time"


@pytest.mark.parametrize("part", ["nonce", "ciphertext", "tag"])
def test_tampered_secret_is_503_naming_the_key(ring: KeyRing, part: str) -> None:
    sealed = parse_sealed(ring.seal("hunter2", configuration_id=CONFIGURATION, path="/pw"))
    nonce, ciphertext = {
        "nonce": (flip_bit(sealed.nonce, 0), sealed.ciphertext),
        "ciphertext": (sealed.nonce, flip_bit(sealed.ciphertext, 0)),
        "tag": (sealed.nonce, flip_bit(sealed.ciphertext, -1)),  # the GCM tag is the last 16 bytes
    }[part]
    tampered = f"svc-secret:v1:k1:{base64.b64encode(nonce).decode()}:{base64.b64encode(ciphertext).decode()}"

    with pytest.raises(SecretUnavailable) as caught:
        decrypt_at({"pw": tampered}, ["/pw"], ring, CONFIGURATION)
    assert isinstance(caught.value, Unavailable), "maps to 503"
    assert "'k1'" in caught.value.detail and "hunter2" not in caught.value.detail


@pytest.mark.parametrize(
    ("configuration_id", "path"), [(OTHER_CONFIGURATION, "/db/password"), (CONFIGURATION, "/db/user")]
)
def test_secret_moved_to_another_configuration_or_path_fails(ring: KeyRing, configuration_id: str, path: str) -> None:
    stored = encrypt_at({"db": {"password": "hunter2", "user": "app"}}, ["/db/password"], ring, CONFIGURATION)
    moved = {"db": {"password": stored["db"]["password"], "user": stored["db"]["password"]}}

    with pytest.raises(SecretUnavailable, match="fails authentication with key 'k1'"):
        decrypt_at(moved, [path], ring, configuration_id)


def test_unknown_key_and_clear_value_at_a_secret_path_are_503(ring: KeyRing) -> None:
    under_k2 = encrypt_at({"pw": "hunter2"}, ["/pw"], KeyRing.parse(KEY_2), CONFIGURATION)
    with pytest.raises(SecretUnavailable, match="key 'k2', which is not in the key ring \\(known: k1\\); add it to SVC_SECRET_KEYS"):
        decrypt_at(under_k2, ["/pw"], ring, CONFIGURATION)
    with pytest.raises(SecretUnavailable, match="not in the encrypted form") as caught:
        decrypt_at({"pw": "hunter2"}, ["/pw"], ring, CONFIGURATION)
    assert "hunter2" not in caught.value.detail


def test_a_value_shaped_like_a_sealed_secret_is_plain_data(ring: KeyRing) -> None:
    lookalike = ring.seal("theirs", configuration_id=CONFIGURATION, path="/a")
    config = {"a": lookalike, "b": lookalike}  # /a is not secret; /b is, and holds that text as its value

    stored = encrypt_at(config, ["/b"], ring, CONFIGURATION)

    assert stored["a"] == lookalike and stored["b"] != lookalike
    assert decrypt_at(stored, ["/b"], ring, CONFIGURATION) == config
    assert mask_at(stored, ["/b"]) == {"a": lookalike, "b": MASK}


def test_rotation(ring: KeyRing) -> None:
    config = {"db": {"password": "old-pw"}, "api": [{"key": 42}]}
    paths = ["/db/password", "/api/0/key"]
    under_k1 = encrypt_at(config, paths, ring, CONFIGURATION)
    both = KeyRing.parse(f"{KEY_2},{KEY_1}")
    assert both.primary_id == "k2"

    assert decrypt_at(under_k1, paths, both, CONFIGURATION) == config, "the old key still decrypts"
    under_k2, changed = reencrypt(under_k1, paths, both, CONFIGURATION)
    assert changed == 2
    assert {parse_sealed(under_k2["db"]["password"]).key_id, parse_sealed(under_k2["api"][0]["key"]).key_id} == {"k2"}
    assert reencrypt(under_k2, paths, both, CONFIGURATION) == (under_k2, 0), "a rerun does nothing"

    only_k2 = KeyRing.parse(KEY_2)
    assert decrypt_at(under_k2, paths, only_k2, CONFIGURATION) == config
    with pytest.raises(SecretUnavailable, match="'k1'"):
        decrypt_at(under_k1, paths, only_k2, CONFIGURATION)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (base64.b64encode(b"K" * 32).decode(), "entry 1: expected id:base64key"),
        (f"k1:{base64.b64encode(b'K' * 32).decode()[:-2]}!!", "entry 1 \\('k1'\\): the key is not valid base64"),
        (f"k1:{base64.b64encode(b'K' * 16).decode()}", "entry 1 \\('k1'\\): the key is 16 bytes; AES-256 needs exactly 32"),
        (f"{KEY_1},{KEY_1.replace('k1:', 'k2:')},{KEY_1}", "key id 'k1' appears more than once"),
        (f"{KEY_1},,{KEY_2}", "entry 2: expected id:base64key"),
        (f"bad id:{base64.b64encode(b'K' * 32).decode()}", "entry 1: the key id must be 1-32 characters"),
        (f"{'x' * 33}:{base64.b64encode(b'K' * 32).decode()}", "entry 1: the key id must be 1-32 characters"),
    ],
    ids=lambda value: value if value.startswith("entry") or "is empty" in value or "appears" in value else "",
)
def test_key_ring_errors_name_the_entry_never_the_key(text: str, message: str) -> None:
    with pytest.raises(InvalidSecretKeys, match=message) as caught:
        KeyRing.parse(text)
    for entry in text.split(","):
        key = entry.partition(":")[2] or entry
        assert len(key) < 8 or key not in str(caught.value)


def test_key_ring_never_shows_keys_and_refuses_to_seal_without_one() -> None:
    ring = KeyRing.parse(f" {KEY_1} , {KEY_2} ")
    assert ring.key_ids == ["k1", "k2"]
    assert KeyRing.parse(f"{KEY_2}\n{KEY_1}\n").key_ids == ["k2", "k1"], "a key file may hold one per line"
    assert KEY_1.partition(":")[2] not in repr(ring)
    with pytest.raises(SecretUnavailable, match="set SVC_SECRET_KEYS"):
        encrypt_at({"pw": "x"}, ["/pw"], KeyRing([]), CONFIGURATION)
    assert encrypt_at({"pw": "x"}, [], KeyRing([]), CONFIGURATION) == {"pw": "x"}, "no secrets, no key needed"


# RFC 6901 section 5: the example document and what each pointer evaluates to.
RFC_6901_DOCUMENT = {
    "foo": ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
}
RFC_6901_POINTERS = {
    "/foo": ["bar", "baz"],
    "/foo/0": "bar",
    "/": 0,
    "/a~1b": 1,
    "/c%d": 2,
    "/e^f": 3,
    "/g|h": 4,
    "/i\\j": 5,
    '/k"l': 6,
    "/ ": 7,
    "/m~0n": 8,
}


@pytest.mark.parametrize(("pointer", "expected"), RFC_6901_POINTERS.items())
def test_rfc_6901_pointers(ring: KeyRing, pointer: str, expected: Any) -> None:
    assert resolve(RFC_6901_DOCUMENT, parse_pointer(pointer)) == expected
    assert format_pointer(parse_pointer(pointer)) == pointer
    assert validate_secret_paths(RFC_6901_DOCUMENT, [pointer]) == []

    stored = encrypt_at(RFC_6901_DOCUMENT, [pointer], ring, CONFIGURATION)
    assert resolve(stored, parse_pointer(pointer)) != expected
    assert resolve(mask_at(stored, [pointer]), parse_pointer(pointer)) == MASK
    assert decrypt_at(stored, [pointer], ring, CONFIGURATION) == RFC_6901_DOCUMENT


def test_rfc_6901_whole_document_pointer_and_escape_order() -> None:
    assert resolve(RFC_6901_DOCUMENT, parse_pointer("")) == RFC_6901_DOCUMENT
    # Section 4: "~01" is "~1" (decode ~1 after ~0 would give "/"), and "~" must be escaped first.
    assert parse_pointer("/~01") == ("~1",)
    assert format_pointer(["~1", "a/b"]) == "/~01/a~1b"


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["db/password"], "'db/password' is not a JSON Pointer"),
        (["/db~2x"], "'/db~2x' is not a JSON Pointer"),
        ([""], "the whole configuration cannot be secret"),
        (["/db/pasword"], "'/db/pasword' does not name a value in config"),
        (["/hosts/2"], "'/hosts/2' does not name a value in config"),
        (["/hosts/01"], "'/hosts/01' does not name a value in config"),
        (["/hosts/-"], "'/hosts/-' does not name a value in config"),
        (["/db/password/x"], "'/db/password/x' does not name a value in config"),
        (["/db/password", "/db/password"], "'/db/password' is listed more than once"),
        (["/db/password", "/db"], "'/db/password' is inside '/db', which is secret as a whole"),
        ([7], "a secret path must be a string"),
        (["/" + "x" * 600], "a secret path is at most 512 characters"),
        ([f"/hosts/{i % 2}" for i in range(101)], "at most 100 secret paths"),
        ("/db/password", "secret_paths must be a list"),
    ],
)
def test_invalid_secret_paths(paths: Any, message: str) -> None:
    config = {"db": {"password": "x"}, "hosts": ["a", "b"]}
    found = validate_secret_paths(config, paths)
    assert len(found) == 1 and message in found[0]["message"]


def test_valid_secret_paths() -> None:
    config = {"db": {"password": None}, "hosts": ["a", {"token": "t"}], "dbx": 1}
    assert validate_secret_paths(config, ["/db/password", "/hosts/1/token", "/hosts/0", "/dbx"]) == []


PATHS = ["/db/password", "/api/keys/0"]
CLEAR = {"db": {"host": "h", "password": "hunter2"}, "api": {"keys": ["k-123", "k-456"]}}


def test_read_modify_write_of_the_masked_view_keeps_every_secret(ring: KeyRing) -> None:
    stored = encrypt_at(CLEAR, PATHS, ring, CONFIGURATION)
    masked = mask_at(stored, PATHS)
    assert masked == {"db": {"host": "h", "password": MASK}, "api": {"keys": [MASK, "k-456"]}}

    edited = {**masked, "db": {**masked["db"], "host": "h2"}}
    clear = keep_masked(edited, CLEAR, PATHS, PATHS)

    assert clear == {"db": {"host": "h2", "password": "hunter2"}, "api": {"keys": ["k-123", "k-456"]}}
    new_stored = encrypt_at(clear, PATHS, ring, CONFIGURATION)
    assert clear_text_absent(new_stored, "hunter2", "k-123")
    assert decrypt_at(new_stored, PATHS, ring, CONFIGURATION) == clear


def test_a_new_clear_value_replaces_the_secret() -> None:
    edited = {"db": {"host": "h", "password": "new-pw"}, "api": {"keys": [MASK, "k-456"]}}
    assert keep_masked(edited, CLEAR, PATHS, PATHS) == {
        "db": {"host": "h", "password": "new-pw"},
        "api": {"keys": ["k-123", "k-456"]},
    }


def test_the_mask_where_it_stands_for_no_kept_secret_is_422() -> None:
    newly_secret = {"db": {"host": MASK, "password": "hunter2"}, "api": {"keys": ["k-123", "k-456"]}}
    with pytest.raises(Unprocessable, match="'/db/host' holds the mask '<secret>', but there is no stored secret"):
        keep_masked(newly_secret, CLEAR, PATHS, [*PATHS, "/db/host"])

    no_longer_secret = {"db": {"host": "h", "password": MASK}, "api": {"keys": [MASK, "k-456"]}}
    with pytest.raises(Unprocessable, match="'/db/password' is no longer a secret path") as refused:
        keep_masked(no_longer_secret, CLEAR, PATHS, ["/api/keys/0"])
    assert [e["path"] for e in refused.value.errors] == ["/db/password"]

    never_secret = {"db": {"host": MASK, "password": MASK}, "api": {"keys": [MASK, "k-456"]}}
    with pytest.raises(Unprocessable, match="accepted only at a secret path") as refused:
        keep_masked(never_secret, CLEAR, PATHS, PATHS)
    assert [e["path"] for e in refused.value.errors] == ["/db/host"]


def test_masked_diff_says_which_secret_changed_without_its_value() -> None:
    target = {"db": {"host": "h2", "password": "hunter3"}, "api": {"keys": ["k-123", "k-456"]}}
    patch = masked_diff(CLEAR, PATHS, target, PATHS)

    assert sorted(patch, key=lambda op: op["path"]) == [
        {"op": "replace", "path": "/db/host", "value": "h2"},
        {"op": "replace", "path": "/db/password", "value": MASK},
    ]


def test_masked_diff_hides_secrets_that_array_edits_move_and_tells_json_types_apart() -> None:
    source = {"items": [{"token": "s-1"}], "n": 1}
    target = {"items": [{"name": "new"}, {"token": "s-1"}, {"token": "s-2"}], "n": True}
    patch = masked_diff(source, ["/items/0/token", "/n"], target, ["/items/1/token", "/items/2/token", "/n"])

    assert clear_text_absent(patch, "s-1", "s-2")
    assert {"op": "replace", "path": "/n", "value": MASK} in patch, "1 became true: a change"


def test_key_file_is_created_once_with_mode_0600_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "data" / "secret-keys"
    previous_umask = os.umask(0)
    try:
        with caplog.at_level(logging.WARNING, logger="svc.secret_keys"):
            first = load_or_create_key_file(path)
            second = load_or_create_key_file(path)
    finally:
        os.umask(previous_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r.getMessage() for r in caplog.records if "created the secret key file" in r.getMessage()] != []
    assert len(caplog.records) == 1 and str(path) in caplog.text and "Back it up" in caplog.text
    assert path.read_text().strip().partition(":")[2] not in caplog.text
    sealed = first.seal("x", configuration_id=CONFIGURATION, path="/p")
    assert second.open(sealed, configuration_id=CONFIGURATION, path="/p") == "x"


def test_key_file_created_by_many_at_once_is_one_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "secret-keys"
    starters = 8
    barrier = threading.Barrier(starters)
    rings: list[KeyRing] = []

    def start() -> None:
        barrier.wait()
        rings.append(load_or_create_key_file(path))

    with caplog.at_level(logging.WARNING, logger="svc.secret_keys"):
        threads = [threading.Thread(target=start) for _ in range(starters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(rings) == starters
    assert os.listdir(tmp_path) == ["secret-keys"], "no temporary file left behind"
    assert len(caplog.records) == 1, "one notice"
    sealed = rings[0].seal("x", configuration_id=CONFIGURATION, path="/p")
    assert all(ring.open(sealed, configuration_id=CONFIGURATION, path="/p") == "x" for ring in rings)


def test_where_the_key_ring_comes_from(tmp_path: Path) -> None:
    configured = Settings(_env_file=None, data_dir=tmp_path, secret_keys=f"{KEY_2},{KEY_1}")
    assert secret_key_ring(configured).key_ids == ["k2", "k1"]
    assert not configured.secret_key_file.exists()

    embedded = Settings(_env_file=None, data_dir=tmp_path, secret_keys="")
    assert secret_key_ring(embedded).key_ids == secret_key_ring(embedded).key_ids
    assert embedded.secret_key_file.exists()

    external = Settings(_env_file=None, data_dir=tmp_path / "other", database_url="postgresql://db/svc")
    assert secret_key_ring(external).key_ids == []
    assert not external.secret_key_file.exists(), "no per-host key file beside a shared database"

    with pytest.raises(InvalidSecretKeys, match="entry 1"):
        secret_key_ring(Settings(_env_file=None, data_dir=tmp_path, secret_keys="nonsense"))
