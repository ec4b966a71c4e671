"""`/health` and `/ready`: unauthenticated probes."""

from __future__ import annotations

from fastapi import APIRouter, Response

from svc.api.deps import ServicesDep
from svc.api.operations import operation_id
from svc.api.problems import problem_responses
from svc.api.responses import json_response, off_loop
from svc.services.container import Readiness

router = APIRouter(tags=["health"], generate_unique_id_function=operation_id)


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Dependencies are reachable", response_model=Readiness, responses=problem_responses(503))
async def ready(services: ServicesDep) -> Response:
    return json_response(await off_loop(services.readiness))
