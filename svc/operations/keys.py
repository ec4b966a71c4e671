"""Secret keys as an operator handles them: which key ids seal stored values, and the rotation of a
key file that needs no change to the environment and no restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from svc.db import Database
from svc.repositories.secrets import KeyUsage, SecretRepository
from svc.secret_keys import KeyFileRing, add_first_key, keep_only_first_key
from svc.services.secret_store import RotationProgress, rotate

# How long a rotation waits after writing the new key before it re-encrypts: every serving process
# checks the key file before each use, so a value sealed under the old key after this is one whose
# write began before the file changed, and such a write is long finished by then.
SETTLE_SECONDS = 1.0


def key_usage(db: Database) -> list[KeyUsage]:
    """How many stored secret values each key id seals, in configurations and in revisions."""
    with db.transaction() as tx:
        return SecretRepository(tx).key_usage()


@dataclass
class KeyFileRotation:
    """What `rotate_key_file` did."""

    new_key_id: str
    retired: list[str] = field(default_factory=list)
    passes: int = 0
    values: int = 0


def rotate_key_file(
    db: Database,
    path: Path,
    *,
    batch_size: int = 100,
    report: Callable[[RotationProgress], None] = lambda progress: None,
    say: Callable[[str], None] = lambda line: None,
    settle_seconds: float = SETTLE_SECONDS,
) -> KeyFileRotation:
    """Put a new key first in the key file, re-encrypt every stored secret under it in batches, then
    drop the older keys from the file.

    The older keys are dropped only after a whole pass found nothing left to re-encrypt, so no
    stored value is ever sealed under a key the file no longer holds. Interrupted, the file keeps
    every key it had and a rerun starts over with one more key, which it retires in turn.
    """
    rotation = KeyFileRotation(add_first_key(path))
    say(f"key file {path}: new key '{rotation.new_key_id}' first; serving processes take it up on their next use")
    time.sleep(settle_seconds)
    ring = KeyFileRing(path)
    while True:
        done = rotate(db, ring, batch_size=batch_size, report=report)
        rotation.passes += 1
        changed = sum(progress.values for progress in done)
        rotation.values += changed
        if not changed:
            break
    rotation.retired = keep_only_first_key(path)
    return rotation
