"""Configuration writes through the service layer alone: concurrent writers calling
`ConfigurationService.update` on one event loop in this process, no HTTP. It shows what the
database side of a write allows (batched round trips, commit, announcement) apart from the
per-request CPU of the web stack."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from svc.config import Settings
from svc.repositories.configurations import RECORD_UPDATES
from svc.services.auth import Principal
from svc.services.container import Services


def rate(database_url: str, configuration_ids: list[str], *, seconds: float) -> tuple[float, int]:
    """Writes/s with one writer per configuration for `seconds`; and how many writes that was."""
    with tempfile.TemporaryDirectory(prefix="svc-bench-service-writes-") as scratch:
        settings = Settings(_env_file=None, database_url=database_url, data_dir=Path(scratch))
        services = Services.build(settings, database_url)
        try:
            return asyncio.run(_write_for(services, configuration_ids, seconds))
        finally:
            services.close()


async def _write_for(services: Services, configuration_ids: list[str], seconds: float) -> tuple[float, int]:
    actor = Principal.operator()
    deadline = time.monotonic() + seconds

    async def write(configuration_id: str) -> int:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            await services.configurations.update(actor, configuration_id, {"config": {"service_writes": n}})
        return n

    started = time.monotonic()
    done = await asyncio.gather(*(write(c) for c in configuration_ids))
    elapsed = time.monotonic() - started
    services.statements.close()  # on the loop it belongs to
    return sum(done) / elapsed, sum(done)


def record_workload(configuration_ids: list[str], config: dict) -> tuple[str, list[str]]:
    """A pgbench script (for `-M prepared -f`) of the service's own statement that records one
    configuration change, each client on its own configuration (`:client_id`), and the pgbench
    options that define its variables: what PostgreSQL alone allows, with no HTTP and no Python
    in the way. The JSON is a variable, so it is sent and parsed with every statement."""
    ids = ", ".join(f"'{id_}'" for id_ in configuration_ids)
    mine = f"(ARRAY[{ids}])[:client_id % {len(configuration_ids)} + 1]"
    audit_id = "'01' || lpad(upper(to_hex((random() * 1e15)::bigint)), 24, '0')"
    audit = (f"jsonb_build_object('id', {audit_id}, 'actor_token_id', NULL, 'actor_name', 'pgbench', "
             f"'action', 'configuration.update', 'resource_type', 'configuration', 'resource_id', {mine}, "
             "'request_id', NULL, 'detail', '{}'::jsonb)")
    change = (f"jsonb_build_object('id', {mine}, "
              f"'expected_revision', (SELECT revision FROM configurations WHERE id = {mine}), "
              "'config', (:config)::jsonb, 'schema', NULL, 'secret_paths', '[]'::jsonb, 'comments', NULL, "
              f"'author', 'pgbench', 'message', NULL, 'kind', 'updated', 'audit', {audit})")
    statement = RECORD_UPDATES % {"changes": f"(jsonb_build_array({change}))"}  # (x)::jsonb casts all of x
    return " ".join(statement.split()) + ";\n", ["-D", f"config={json.dumps(config)}"]
