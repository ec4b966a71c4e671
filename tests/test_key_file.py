"""A key file followed while the process runs: a rotation's new key is taken up without a restart."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from svc.crypto import new_key_entry
from svc.errors import SecretUnavailable
from svc.secret_keys import KeyFileRing, add_first_key, keep_only_first_key, load_or_create_key_file

WHERE = {"configuration_id": "01J00000000000000000000000", "path": "/p"}


def test_a_serving_ring_takes_up_a_new_first_key_and_keeps_its_keys_through_a_bad_edit(tmp_path, caplog):
    path = tmp_path / "secret-keys"
    load_or_create_key_file(path)
    serving = KeyFileRing(path)
    old = serving.seal("v1", **WHERE)

    new_id = add_first_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert serving.seal("v2", **WHERE).split(":")[2] == new_id, "the next seal uses the new key, no restart"
    assert serving.open(old, **WHERE) == "v1"

    rotated = KeyFileRing(path)  # another process: opens what the serving one sealed under the new key
    assert rotated.open(serving.seal("v3", **WHERE), **WHERE) == "v3"

    path.write_text("not a key ring\n")
    with caplog.at_level(logging.ERROR, logger="svc.secret_keys"):
        assert serving.open(serving.seal("v4", **WHERE), **WHERE) == "v4"
    assert "the keys held are kept" in caplog.text


def test_retiring_keeps_only_the_first_key_and_a_reader_follows_the_file(tmp_path):
    path = tmp_path / "secret-keys"
    path.write_text(new_key_entry("a") + "\n")
    os.chmod(path, 0o600)
    reader = KeyFileRing(path)
    add_first_key(path)
    assert keep_only_first_key(path) == ["a"]
    writer = KeyFileRing(path)
    assert reader.open(writer.seal("x", **WHERE), **WHERE) == "x"
    assert reader.key_ids == writer.key_ids and len(reader.key_ids) == 1


def test_sighup_reload_reads_the_file_now(tmp_path):
    path = tmp_path / "secret-keys"
    path.write_text(new_key_entry("a") + "\n")
    ring = KeyFileRing(path)
    stamp = path.stat()
    path.write_text(new_key_entry("b") + "\n")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same size and time: only a reload sees it
    if os.stat(path).st_ino != stamp.st_ino:
        pytest.skip("the file was replaced, not rewritten")
    assert ring.primary_id == "a"
    ring.reload()
    assert ring.key_ids == ["b"]


def test_a_value_under_a_key_the_file_lacks_says_to_add_it_to_the_file(tmp_path):
    elsewhere = tmp_path / "other-keys"
    elsewhere.write_text(new_key_entry("gone") + "\n")
    path = tmp_path / "secret-keys"
    path.write_text(new_key_entry("a") + "\n")
    with pytest.raises(SecretUnavailable, match=r"key 'gone', .* \(known: a\); add it to the secret key file "):
        KeyFileRing(path).open(KeyFileRing(elsewhere).seal("x", **WHERE), **WHERE)
