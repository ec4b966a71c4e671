"""Services answer typed results: no public method of a class in svc/services/ is annotated to
return a dict (nor a list, tuple, page or union holding one). Response shapes are declared once,
as the dataclasses the services return and the routes name as response models."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

import svc.services
from svc.services.pagination import Page


def _public_methods() -> list[tuple[str, typing.Callable[..., typing.Any]]]:
    """Every public function, classmethod and staticmethod defined by a class of svc.services."""
    methods = []
    for module_info in pkgutil.iter_modules(svc.services.__path__):
        module = importlib.import_module(f"svc.services.{module_info.name}")
        for class_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name, member in vars(cls).items():
                if name.startswith("_"):
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if inspect.isfunction(member):
                    methods.append((f"{module.__name__}.{class_name}.{name}", member))
    return methods


def _holds_a_dict(annotation: typing.Any) -> bool:
    if annotation is dict or typing.get_origin(annotation) is dict:
        return True
    return any(_holds_a_dict(argument) for argument in typing.get_args(annotation))


def test_no_public_service_method_returns_a_dict() -> None:
    methods = _public_methods()
    assert len(methods) > 50, "the walk found too few service methods: it checks nothing"
    returning_dicts = [
        name for name, method in methods if _holds_a_dict(typing.get_type_hints(method).get("return"))
    ]
    assert returning_dicts == []


def test_the_check_sees_a_dict_inside_a_result() -> None:
    assert _holds_a_dict(dict[str, typing.Any])
    assert _holds_a_dict(list[dict[str, str]] | None)
    assert _holds_a_dict(tuple[int, dict[str, str]])
    assert not _holds_a_dict(Page[str])
