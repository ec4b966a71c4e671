"""Configuration writes through the service layer alone: threads calling `ConfigurationService.update`
in this process, no HTTP. It shows what the database side of a write allows (transactions, commit,
announcement) apart from the per-request CPU of the web stack."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from svc.config import Settings
from svc.services.auth import Principal
from svc.services.container import Services


def rate(database_url: str, configuration_ids: list[str], *, seconds: float) -> tuple[float, int]:
    """Writes/s with one thread per configuration for `seconds`; and how many writes that was."""
    with tempfile.TemporaryDirectory(prefix="svc-bench-service-writes-") as scratch:
        settings = Settings(_env_file=None, database_url=database_url, data_dir=Path(scratch),
                            pool_min_size=len(configuration_ids), pool_max_size=len(configuration_ids))
        services = Services.build(settings, database_url)
        try:
            actor = Principal.operator()
            done: list[int] = []
            deadline = time.monotonic() + seconds

            def write(configuration_id: str) -> None:
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    services.configurations.update(actor, configuration_id, {"config": {"service_writes": n}})
                done.append(n)

            threads = [threading.Thread(target=write, args=(c,)) for c in configuration_ids]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        finally:
            services.close()
    return sum(done) / elapsed, sum(done)
