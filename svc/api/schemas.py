"""Shapes shared by several routers."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next: str | None


# Names of applications, configurations and users: 1–256 letters, digits, '.', '_', '-'.
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,256}$"


def _valid_unicode(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); they cannot be stored as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    return value


# Free text that is stored: valid Unicode only.
Text = Annotated[str, AfterValidator(_valid_unicode)]
