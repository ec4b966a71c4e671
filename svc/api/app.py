"""The FastAPI application factory."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.routing import BaseRoute

from svc import metrics
from svc.api import operations, problems
from svc.api.door import Door
from svc.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from svc.api.routes import (
    applications, audit, catalog, configurations, delivery, documents, git, health, products, teams, tokens,
    users,
)
from svc.api.routes import metrics as metrics_routes
from svc.config import Settings, get_settings
from svc.embedded import database_url
from svc.log import configure_logging
from svc.services.container import Services

log = logging.getLogger(__name__)

# Matched in this order, so the routes internal services hit hardest come first.
API_ROUTERS = [
    delivery.router,
    configurations.router,
    applications.router,
    documents.router,
    products.router,
    users.router,
    teams.router,
    catalog.router,
    tokens.router,
    audit.router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; the pool and services are created when it starts."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        services = Services.build(settings, database_url(settings))
        app.state.services = services
        await services.start()
        # What exists now lives as long as the worker: kept out of the collector's full passes,
        # each of which would otherwise walk it again: a pause for every request in flight
        # (measured: docs/performance-notes.md).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again once this app is dropped (tests start many in one process)
            await services.stop()
            services.close()
            metrics.mark_worker_exited()

    app = FastAPI(
        title="svc — configuration service",
        version="1.0",
        description="Versioned JSON configurations for internal services and versioned claude.md documents.",
        lifespan=lifespan,
    )
    problems.install(app)
    operations.document_without_head(app)
    app.add_middleware(Door, router=app.router, doorways=[delivery.DOORWAY, *configurations.DOORWAYS])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, access_log_enabled=settings.access_log)

    app.router.routes.extend(route_table())
    return app


@functools.cache
def route_table() -> tuple[BaseRoute, ...]:
    """Every route of the service, defined once per process and shared by its apps. Each router
    carries its final prefix and dependencies (`operations.api_router`) and its routes are added
    as they are, not included: FastAPI would work out an included route's state a second time."""
    routers = [health.router, metrics_routes.router, git.router, *API_ROUTERS]
    for router in routers:
        operations.answer_head(router)
    return tuple(route for router in routers for route in router.routes)
