"""Where the key ring for secret values comes from: `SVC_SECRET_KEYS`, or a key file (the embedded
default's, or `SVC_SECRET_KEY_FILE`).

With `DATABASE_URL` set and neither, the ring is empty and storing a secret is a 503 naming
SVC_SECRET_KEYS: a key file created per data directory would give each host of a shared database a
different key, and each would write secrets the others cannot read. So only the embedded default
creates its key file; one named by SVC_SECRET_KEY_FILE must exist.

A key file is followed while the process runs (`KeyFileRing`): `svc secrets rotate` rewrites it,
and every serving process takes the new key up without a restart.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from svc.config import Settings
from svc.crypto import InvalidSecretKeys, KeyRing, new_key_entry, parse_sealed

log = logging.getLogger(__name__)


def secret_key_ring(settings: Settings) -> KeyRing:
    """The key ring this process uses; raises InvalidSecretKeys when the configured keys are malformed."""
    configured = settings.secret_keys.get_secret_value().strip() if settings.secret_keys else ""
    if configured:
        return KeyRing.parse(configured)
    if settings.uses_key_file:
        path = settings.secret_key_file
        if settings.embedded:
            load_or_create_key_file(path)
        elif not path.exists():
            raise InvalidSecretKeys(f"SVC_SECRET_KEY_FILE {path} does not exist")
        return KeyFileRing(path)
    return KeyRing([])


def key_source(settings: Settings) -> str:
    """Where the key ring comes from, in words (for start-up and command messages)."""
    if settings.uses_key_file:
        return f"key file {settings.secret_key_file}"
    return "SVC_SECRET_KEYS" if settings.secret_keys and settings.secret_keys.get_secret_value().strip() else "none"


class KeyFileRing(KeyRing):
    """The key ring of a key file, kept current while the process runs.

    Before each use the file's identity (inode, size, modification time) is compared with the one
    read: a stat, no read. It is read again when that changed, when a stored value names a key id
    the ring does not hold, and on `reload()` (SIGHUP). A file that no longer parses is logged and
    the ring read last is kept: a serving process never loses its keys to a bad edit.
    """

    def __init__(self, path: Path) -> None:
        super().__init__([], kept_in="the secret key file (SVC_SECRET_KEY_FILE)")
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        ring = KeyRing.parse(path.read_text(encoding="ascii"), source=str(path))  # malformed at start: raise
        self._take(ring, _stamp(path))

    def reload(self) -> None:
        """Read the file again now (SIGHUP)."""
        with self._lock:
            self._read()

    @property
    def key_ids(self) -> list[str]:
        self._follow()
        return super().key_ids

    def seal(self, value: Any, *, configuration_id: str, path: str) -> str:
        self._follow()
        return super().seal(value, configuration_id=configuration_id, path=path)

    def open(self, stored: Any, *, configuration_id: str, path: str) -> Any:
        self._follow()
        sealed = parse_sealed(stored)
        if sealed is not None and sealed.key_id not in self._ciphers:
            self.reload()
        return super().open(stored, configuration_id=configuration_id, path=path)

    def needs_reencryption(self, stored: Any) -> bool:
        self._follow()
        return super().needs_reencryption(stored)

    def _follow(self) -> None:
        try:
            current = _stamp(self.path)
        except OSError:
            return  # between a rename and the next, or removed: keep the keys held
        if current != self._stamp:
            with self._lock:
                if current != self._stamp:
                    self._read()

    def _read(self) -> None:
        try:
            stamp = _stamp(self.path)
            ring = KeyRing.parse(self.path.read_text(encoding="ascii"), source=str(self.path))
        except (OSError, InvalidSecretKeys) as exc:
            log.error("secret key file %s could not be read again, the keys held are kept: %s", self.path, exc)
            return
        if ring.key_ids != super().key_ids:
            log.info("secret key file %s read again: key ids %s", self.path, ", ".join(ring.key_ids))
        self._take(ring, stamp)

    def _take(self, ring: KeyRing, stamp: tuple[int, int, int]) -> None:
        # The ciphers first: a seal that read the previous primary id still finds its key.
        self._ciphers = ring._ciphers
        self.primary_id = ring.primary_id
        self._stamp = stamp


def _stamp(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


def add_first_key(path: Path) -> str:
    """Put a new key first in the key file (it encrypts from now on; the others still decrypt); its id."""
    ring = KeyRing.parse(path.read_text(encoding="ascii"), source=str(path))
    key_id = "local-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    while key_id in ring.key_ids:
        key_id = "local-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
    lines = [new_key_entry(key_id), *_entries(path)]
    _replace(path, lines)
    return key_id


def keep_only_first_key(path: Path) -> list[str]:
    """Drop every key but the first from the key file; the ids of the keys dropped."""
    entries = _entries(path)
    _replace(path, entries[:1])
    return [entry.partition(":")[0].strip() for entry in entries[1:]]


def _entries(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="ascii").replace(",", "\n").splitlines() if line.strip()]


def _replace(path: Path, lines: list[str]) -> None:
    """Write the key file anew, atomically: readers see the old file or the new one, never a part."""
    temporary = _private_file_beside(path, lines)
    try:
        os.replace(temporary, path)
        _sync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


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
    temporary = _private_file_beside(path, [new_key_entry(key_id)])
    try:
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


def _private_file_beside(path: Path, lines: list[str]) -> Path:
    """A new file of `lines` next to `path`, mode exactly 0600 whatever the umask, synced; its path."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, ("\n".join(lines) + "\n").encode("ascii"))
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    os.close(descriptor)
    return temporary


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
