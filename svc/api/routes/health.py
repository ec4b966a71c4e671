"""`/health` and `/ready`: unauthenticated probes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response

from svc.api.deps import ServicesDep
from svc.api.problems import problem_responses
from svc.api.responses import json_response, off_loop
from svc.errors import Unavailable
from svc.services.container import Services

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Dependencies are reachable", response_model=dict, responses=problem_responses(503))
async def ready(services: ServicesDep) -> Response:
    return json_response(await off_loop(lambda: _readiness(services)))


def _readiness(services: Services) -> dict[str, Any]:
    checks = services.readiness()
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise Unavailable(f"not ready: {', '.join(failed)} unreachable")
    # Reported, not failed: every other configuration still serves, so taking the process out of
    # a load balancer would turn one unreadable secret into a whole outage.
    unreadable = services.unreadable_secret_keys()
    return {
        "status": "ok",
        "checks": checks | {"secret_keys": not unreadable},
        "unreadable_secret_keys": unreadable,
        "pool": asdict(services.db.stats()),
    }
