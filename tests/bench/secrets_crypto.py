"""Cost of secret values, per secret, beside baselines measured in the same run.

    uv run python -m tests.bench.secrets_crypto

Seals and opens one typical secret (a 24-character password; a small object), and a typical
configuration with 4 secret paths through `encrypt_at` / `decrypt_at` / `mask_at`, next to
`orjson.dumps` / `orjson.loads` of that configuration (what every write and resolve already pays).
Figures are medians of many batches, in µs.

    uv run python -m tests.bench.secrets_crypto --service

adds the service-level paths on an embedded PostgreSQL: a PUT of the configuration through
`ConfigurationService.update` (decrypt the previous state, keep masks, validate, seal, write the row
and its revision), and a resolve cache miss through the delivery service (read the row, render the
masked or the revealed body), each next to the same configuration without secret paths.
"""

from __future__ import annotations

import asyncio

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from svc.crypto import KeyRing, new_key_entry
from svc.services.secret_values import decrypt_at, encrypt_at, mask_at
from tests.bench.processes import scratch_database

CONFIGURATION_ID = "01JCONFIGURATION0000000000"
PASSWORD = "x7!Qm2#Lp9@vR4$tW8^zN3&k"
CONFIG: dict[str, Any] = {
    "database": {"host": "db.internal", "port": 5432, "user": "app", "password": PASSWORD, "pool": {"min": 2, "max": 20}},
    "cache": {"url": "redis://cache.internal:6379/0", "ttl_seconds": 300},
    "payments": {"provider": "stripe", "api_key": "sk_live_" + "a" * 24, "webhook_secret": "whsec_" + "b" * 32},
    "smtp": {"host": "smtp.internal", "port": 587, "credentials": {"user": "mailer", "password": PASSWORD}},
    "features": {f"flag_{i}": i % 2 == 0 for i in range(20)},
    "limits": {"requests_per_minute": 600, "burst": 50, "timeout_ms": 2500.5},
}
SECRET_PATHS = ["/database/password", "/payments/api_key", "/payments/webhook_secret", "/smtp/credentials"]


def per_call_us(
    call: Callable[[], Any], *, batch: int = 2000, batches: int = 31, clock: Callable[[], int] = time.perf_counter_ns
) -> float:
    """Median over `batches` of the mean µs per call in a batch of `batch` calls (by `clock`)."""
    samples = []
    for _ in range(batches):
        start = clock()
        for _ in range(batch):
            call()
        samples.append((clock() - start) / batch / 1000)
    return statistics.median(samples)


def main() -> None:
    ring = KeyRing.parse(new_key_entry("bench"))
    sealed_password = ring.seal(PASSWORD, configuration_id=CONFIGURATION_ID, path="/database/password")
    small_object = CONFIG["smtp"]["credentials"]
    sealed_object = ring.seal(small_object, configuration_id=CONFIGURATION_ID, path="/smtp/credentials")
    stored = encrypt_at(CONFIG, SECRET_PATHS, ring, CONFIGURATION_ID)
    config_text = orjson.dumps(CONFIG)
    secrets = len(SECRET_PATHS)

    rows = [
        ("baseline: orjson.dumps(config)", per_call_us(lambda: orjson.dumps(CONFIG)), 1),
        ("baseline: orjson.loads(config text)", per_call_us(lambda: orjson.loads(config_text)), 1),
        ("seal one password", per_call_us(lambda: ring.seal(PASSWORD, configuration_id=CONFIGURATION_ID, path="/p")), 1),
        ("open one password", per_call_us(lambda: ring.open(sealed_password, configuration_id=CONFIGURATION_ID, path="/database/password")), 1),
        ("seal one small object", per_call_us(lambda: ring.seal(small_object, configuration_id=CONFIGURATION_ID, path="/p")), 1),
        ("open one small object", per_call_us(lambda: ring.open(sealed_object, configuration_id=CONFIGURATION_ID, path="/smtp/credentials")), 1),
        (f"encrypt_at config ({secrets} secrets)", per_call_us(lambda: encrypt_at(CONFIG, SECRET_PATHS, ring, CONFIGURATION_ID), batch=500), secrets),
        (f"decrypt_at config ({secrets} secrets)", per_call_us(lambda: decrypt_at(stored, SECRET_PATHS, ring, CONFIGURATION_ID), batch=500), secrets),
        (f"mask_at config ({secrets} secrets, no key)", per_call_us(lambda: mask_at(stored, SECRET_PATHS), batch=500), secrets),
    ]
    print(f"config: {len(config_text)} bytes of JSON, {secrets} secret paths; medians of 31 batches")
    print(f"{'operation':<44} {'µs/call':>9} {'µs/secret':>10}")
    for label, us, count in rows:
        print(f"{label:<44} {us:>9.2f} {us / count:>10.2f}")


def service_paths() -> None:
    """Write and resolve through the services, with and without secret paths, alternated in one run."""
    from svc.db import AsyncStatements
    from svc.services.applications import ApplicationService
    from svc.services.auth import Principal
    from svc.services.configurations import ConfigurationService
    from svc.services.delivery import ByName, DeliveryService

    with scratch_database(min_size=1, max_size=2) as (_, url, db):
        statements = AsyncStatements(url, size=2)
        ring = KeyRing.parse(new_key_entry("bench"))
        operator = Principal.operator()
        configurations = ConfigurationService(
            db, statements, ring, max_config_bytes=1 << 20, announce=lambda payload: None
        )
        delivery = DeliveryService(
            db, statements, ring, cache_max_bytes=1 << 20, event_retention_hours=1, configurations=configurations
        )
        application = ApplicationService(db, announce=lambda payload: None, store=None).create(operator, name="bench")
        application_id = application.id
        loop = asyncio.new_event_loop()  # the service's methods, and the statements of a read, run on an event loop
        ids = {
            paths: loop.run_until_complete(configurations.create(
                operator, application_id, name=name, config=CONFIG, secret_paths=list(paths)
            )).id
            for name, paths in (("plain", ()), ("secret", tuple(SECRET_PATHS)))
        }
        counter = iter(range(10**9))

        def write(paths: tuple[str, ...]) -> None:
            config = {**CONFIG, "limits": {**CONFIG["limits"], "burst": next(counter)}}
            loop.run_until_complete(configurations.update(operator, ids[paths], {"config": config}))

        def read(key: ByName) -> None:
            loop.run_until_complete(delivery._read(key))

        secret = tuple(SECRET_PATHS)
        timings: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for _ in range(15):  # alternated, so drift of the machine or the database hits both alike
            for label, call in (
                ("write, no secret paths", lambda: write(())),
                (f"write, {len(secret)} secrets", lambda: write(secret)),
                ("resolve miss, no secret paths", lambda: read(ByName("bench", "plain"))),
                (f"resolve miss, {len(secret)} secrets masked", lambda: read(ByName("bench", "secret"))),
                (f"resolve miss, {len(secret)} secrets revealed", lambda: read(ByName("bench", "secret", revealed=True))),
            ):
                timings.setdefault(label, []).append(per_call_us(call, batch=20, batches=1))
                cpu.setdefault(label, []).append(per_call_us(call, batch=20, batches=1, clock=time.process_time_ns))
        statements.close()
        loop.close()
    print(f"\nservice paths on embedded PostgreSQL ({len(secret)} secret paths), medians of 15 alternated batches;")
    print("wall time includes the database (a write's commit fsync is noisy), CPU time is this process's")
    print(f"{'path':<40} {'wall µs':>9} {'CPU µs':>8} {'CPU µs/secret over baseline':>28}")
    wall = {label: statistics.median(samples) for label, samples in timings.items()}
    spent = {label: statistics.median(samples) for label, samples in cpu.items()}
    baseline = {"write": spent["write, no secret paths"], "resolve": spent["resolve miss, no secret paths"]}
    for label in wall:
        extra = (spent[label] - baseline[label.split()[0].rstrip(",")]) / len(secret) if "secrets" in label else 0.0
        print(f"{label:<40} {wall[label]:>9.1f} {spent[label]:>8.1f} {extra:>28.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--service", action="store_true", help="also the service-level write and resolve paths")
    main()
    if parser.parse_args().service:
        service_paths()
