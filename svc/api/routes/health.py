"""`/health` and `/ready`: unauthenticated probes."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from svc.api.deps import ServicesDep
from svc.api.problems import problem_responses
from svc.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Dependencies are reachable", responses=problem_responses(503))
def ready(services: ServicesDep) -> dict:
    checks = services.readiness()
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise Unavailable(f"not ready: {', '.join(failed)} unreachable")
    return {"status": "ok", "checks": checks, "pool": asdict(services.db.stats())}
