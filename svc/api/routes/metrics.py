"""`/metrics`: Prometheus text format; off, admin-only (default) or public, by `SVC_METRICS`."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from svc import metrics
from svc.api.deps import BearerCredentials, ServicesDep
from svc.api.operations import operation_id
from svc.api.problems import problem_responses
from svc.api.responses import off_loop
from svc.errors import NotFound
from svc.services import policy
from svc.services.policy import Action

router = APIRouter(tags=["health"], generate_unique_id_function=operation_id)


async def _metrics_access(services: ServicesDep, credentials: BearerCredentials) -> None:
    if services.settings.metrics == "off":
        raise NotFound("metrics are turned off (SVC_METRICS=off)")
    if services.settings.metrics == "token":
        principal = await services.authenticator.principal(credentials.credentials if credentials else None)
        policy.require(principal, Action.READ_METRICS)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(_metrics_access)],
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}} | problem_responses(401, 403, 404, 503),
)
async def prometheus_metrics() -> Response:
    # off the loop: in multiprocess mode the figures are read from every worker's files
    return Response(await off_loop(metrics.render), media_type=metrics.CONTENT_TYPE)
