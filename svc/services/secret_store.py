"""Operations over every stored secret: re-encryption under the first key, and the `/ready` sample check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from svc.crypto import KeyRing, parse_sealed
from svc.db import Database
from svc.errors import SecretUnavailable
from svc.repositories.secrets import SealedRow, SecretRepository
from svc.services.secret_values import parse_pointer, reencrypt, resolve


@dataclass
class RotationProgress:
    """What a rotation has done so far, per table."""

    table: str
    rows: int = 0
    values: int = 0


def rotate(
    db: Database,
    keyring: KeyRing,
    *,
    batch_size: int = 100,
    report: Callable[[RotationProgress], None] = lambda progress: None,
    max_batches: int | None = None,
) -> list[RotationProgress]:
    """Seal every stored secret not under the key ring's first key again under it.

    Each batch is its own short transaction over rows locked in key order, so the rotation runs
    beside a serving process and can stop anywhere: a rerun skips what is already under the first
    key without decrypting it. `max_batches` stops early (for an interrupted rotation's test).
    """
    if keyring.primary_id is None:
        raise SecretUnavailable("no secret key is configured: set SVC_SECRET_KEYS; its first key encrypts")
    done: list[RotationProgress] = []
    batches = 0
    for table in ("configurations", "configuration_revisions"):
        progress = RotationProgress(table)
        done.append(progress)
        after = ("", 0)
        while max_batches is None or batches < max_batches:
            with db.transaction() as tx:
                secrets = SecretRepository(tx)
                if table == "configurations":
                    rows = secrets.configurations_after(after[0], batch_size)
                else:
                    rows = secrets.revisions_after(after[0], after[1], batch_size)
                for row in rows:
                    sealed, changed = reencrypt(row.config, row.secret_paths, keyring, row.configuration_id)
                    if changed:
                        secrets.set_config(row, sealed)
                        progress.values += changed
                tx.commit()
            batches += 1
            if not rows:
                break
            progress.rows += len(rows)
            after = (rows[-1].configuration_id, rows[-1].revision)
            report(progress)
    return done


def check_secret_samples(db: Database, keyring: KeyRing) -> dict[str, str]:
    """For each key id found in stored configurations whose sample the ring cannot open: why (never a value)."""
    with db.transaction() as tx:
        samples = SecretRepository(tx).samples()
    failing: dict[str, str] = {}
    for sample in samples:
        try:
            _open_one(sample, keyring)
        except SecretUnavailable as exc:
            failing[sample.key_id or "?"] = exc.detail
    return failing


def _open_one(sample: SealedRow, keyring: KeyRing) -> None:
    for pointer in sample.secret_paths:
        value = resolve(sample.config, parse_pointer(pointer))
        sealed = parse_sealed(value)
        if sealed is not None and sealed.key_id == sample.key_id:
            keyring.open(value, configuration_id=sample.configuration_id, path=pointer)
            return
