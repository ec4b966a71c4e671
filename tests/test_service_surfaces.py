"""Each use-case service's public methods are all coroutine functions or all plain ones, so that
a route author never has to know which to wrap (issue 26)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import svc.services

# Not yet one or the other: its lifecycle hooks (attach, prune_events, …) are plain, its reads async.
MIXED_STILL = {"DeliveryService"}


def use_case_services() -> list[type]:
    found = []
    for module in pkgutil.iter_modules(svc.services.__path__):
        loaded = importlib.import_module(f"svc.services.{module.name}")
        found += [
            cls for name, cls in vars(loaded).items()
            if name.endswith("Service") and inspect.isclass(cls) and cls.__module__ == loaded.__name__
        ]
    return found


def test_every_services_public_methods_are_all_sync_or_all_async():
    services = use_case_services()
    assert len(services) >= 10, [cls.__name__ for cls in services]  # the walk found them
    mixed = {}
    for cls in services:
        methods = {name: inspect.iscoroutinefunction(f) for name, f in inspect.getmembers(cls, inspect.isfunction)
                   if not name.startswith("_")}
        if len(set(methods.values())) > 1:
            mixed[cls.__name__] = methods
    assert set(mixed) == MIXED_STILL, mixed


def test_configuration_service_is_all_async():
    from svc.services.configurations import ConfigurationService

    public = [f for name, f in inspect.getmembers(ConfigurationService, inspect.isfunction) if not name.startswith("_")]
    assert public and all(inspect.iscoroutinefunction(f) for f in public)
