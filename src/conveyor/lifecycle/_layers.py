"""The one place where lifecycle reaches up the layers, until runtime registers its serializers.

pyproject's layers contract puts lifecycle below runtime, yet lifecycle's
results must be storable step outputs, which takes runtime's serializer
registry. import-linter sees every ``import`` statement, also one inside a
function, so ``conveyor.runtime.serializers`` is loaded through `importlib`
here, named in one module, until runtime registers these serializers itself
(ADR 10). (The profiler that ``analyze`` uses now sits below lifecycle, in
``conveyor.profiling``: ADR 12.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["register_serializer"]

RUNTIME_SERIALIZERS = "conveyor.runtime.serializers"


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
