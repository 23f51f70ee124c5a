"""The model registry: immutable, verified model packages with audited, movable aliases.

Importing it is cheap: pandas and the model libraries load when a model is
registered or loaded.
"""

from conveyor.registry.loaded import LoadedModel
from conveyor.registry.registry import Registry, RunLookup

__all__ = ["LoadedModel", "Registry", "RunLookup"]
