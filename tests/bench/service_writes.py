"""Configuration writes through the service layer alone: threads calling `ConfigurationService.update`
in this process, no HTTP. It shows what the database side of a write allows (transactions, commit,
announcement) apart from the per-request CPU of the web stack."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from svc.config import Settings
from svc.repositories.configurations import RECORD_UPDATE
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


def record_workload(configuration_ids: list[str], config: dict) -> tuple[str, list[str]]:
    """A pgbench script (for `-M prepared -f`) of the service's own statement that records one
    configuration change, each client on its own configuration (`:client_id`), and the pgbench
    options that define its variables: what PostgreSQL alone allows, with no HTTP and no Python
    in the way. The JSON is a variable, so it is sent and parsed with every statement."""
    ids = ", ".join(f"'{id_}'" for id_ in configuration_ids)
    mine = f"(ARRAY[{ids}])[:client_id % {len(configuration_ids)} + 1]"
    values = {
        "config": ":config", "schema": "NULL", "secret_paths": "'[]'", "comments": "NULL",
        "id": mine, "expected_revision": f"(SELECT revision FROM configurations WHERE id = {mine})",
        "author": "'pgbench'", "message": "NULL", "kind": "'updated'",
        "audit_id": "'01' || lpad(upper(to_hex((random() * 1e15)::bigint)), 24, '0')",
        "actor_token_id": "NULL", "actor_name": "'pgbench'", "action": "'configuration.update'",
        "resource_type": "'configuration'", "resource_id": mine, "request_id": "NULL", "detail": "'{}'",
    }
    statement = RECORD_UPDATE % {name: f"({value})" for name, value in values.items()}  # (x)::type casts all of x
    return " ".join(statement.split()) + ";\n", ["-D", f"config={json.dumps(config)}"]
