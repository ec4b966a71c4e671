"""Where the key ring for secret values comes from: `SVC_SECRET_KEYS`, or the embedded default's key file.

With `DATABASE_URL` set and no `SVC_SECRET_KEYS`, the ring is empty and storing a secret is a 503
naming SVC_SECRET_KEYS: a key file per data directory would give each host of a shared database a
different key, and each would write secrets the others cannot read.
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from svc.config import Settings
from svc.crypto import KeyRing, new_key_entry

log = logging.getLogger(__name__)


def secret_key_ring(settings: Settings) -> KeyRing:
    """The key ring this process uses; raises InvalidSecretKeys when the configured keys are malformed."""
    configured = settings.secret_keys.get_secret_value().strip() if settings.secret_keys else ""
    if configured:
        return KeyRing.parse(configured)
    if settings.embedded:
        return load_or_create_key_file(settings.secret_key_file)
    return KeyRing([])


def load_or_create_key_file(path: Path) -> KeyRing:
    """The key ring in `path` (`id:base64key` text, as SVC_SECRET_KEYS takes it), created with one new key if absent.

    Creation is atomic: the key is written and synced in a private temporary file, then linked to
    `path`, which fails if another process got there first; that process's key is then used. So
    two processes starting at once agree on one key, and nobody ever reads a half-written file.
    """
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("secret key file %s is readable by others (mode %o); run: chmod 600 %s", path, mode, path)
    return KeyRing.parse(path.read_text(encoding="ascii"), source=str(path))


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key_id = "local-" + datetime.now(UTC).strftime("%Y%m%d")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(descriptor, 0o600)  # exactly 0600, whatever the umask
            os.write(descriptor, (new_key_entry(key_id) + "\n").encode("ascii"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process created it first: use its key
        _sync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
    log.warning(
        "created the secret key file %s (key id %s) for secret values in configurations. "
        "Back it up: without it they cannot be read. To share it with other hosts or move to "
        "DATABASE_URL, put its content in SVC_SECRET_KEYS.",
        path,
        key_id,
    )


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
