"""The application drivers the platform knows, looked up by application name."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from epic.software.base import ApplicationDriver
from epic.software.openfoam import OpenFoamDriver
from epic.software.script import ScriptDriver

_FACTORIES: dict[str, Callable[[], ApplicationDriver]] = {
    "openfoam": OpenFoamDriver,
    "script": ScriptDriver,
}


def driver_names() -> list[str]:
    """Return the names get_driver accepts, sorted."""
    return sorted(_FACTORIES)


@cache
def get_driver(name: str) -> ApplicationDriver:
    """Return the shared driver for an application name, or raise KeyError if there is none."""
    if name not in _FACTORIES:
        raise KeyError(name)
    return _FACTORIES[name]()
