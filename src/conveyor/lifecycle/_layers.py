"""The only two places where lifecycle reaches up the layers, until the layer order is settled.

pyproject's layers contract puts lifecycle below runtime and monitoring, yet
``analyze`` reuses monitoring's profiler and lifecycle's results must be
storable step outputs, which takes runtime's serializer registry. import-linter
sees every ``import`` statement, also one inside a function, so both go through
`importlib` here, named in one module, to be replaced by plain imports once the
layers allow them (ADR 10):

- ``conveyor.monitoring.profile`` (`profile_module`), used by ``analyze``;
- ``conveyor.runtime.serializers`` (`register_serializer`), used when lifecycle is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["profile_module", "register_serializer"]

MONITORING_PROFILE = "conveyor.monitoring.profile"
RUNTIME_SERIALIZERS = "conveyor.runtime.serializers"


def profile_module() -> ModuleType:
    """``conveyor.monitoring.profile`` (its `profile` function and `Profile` class)."""
    return importlib.import_module(MONITORING_PROFILE)


def register_serializer(
    target: type | str,
    name: str,
    suffix: str,
    media_type: str,
    dump: Callable[[Any], bytes],
    load: Callable[[bytes], Any],
) -> None:
    """Register a runtime `Serializer` for step outputs of type ``target``."""
    serializers = importlib.import_module(RUNTIME_SERIALIZERS)
    serializers.register_serializer(
        target, serializers.Serializer(name, suffix, media_type, dump, load)
    )
