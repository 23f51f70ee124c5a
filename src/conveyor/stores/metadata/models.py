"""The narrow interface every metadata backend implements for the model registry.

A version's number is allocated inside the transaction that records it, and
every alias move is one transaction that also writes its audit event, so
concurrent registrations never share a number and every event knows the true
version the alias left.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.core.entities import SourceVersion
from conveyor.core.registry import (
    AliasEvent,
    Environment,
    ModelVersion,
    RegisteredModel,
    Signature,
)

__all__ = ["ModelStore", "NewModelVersion"]


@dataclass(frozen=True, slots=True)
class NewModelVersion:
    """A package already in the artifact store, to be recorded as the next version of ``name``.

    The model is created with the first version registered under its name.
    """

    name: str
    format: str
    manifest_sha256: str
    signature: Signature
    environment: Environment
    files: Mapping[str, str]
    trusted: bool = False
    run_id: str | None = None
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    source: SourceVersion = field(default_factory=SourceVersion)
    data_digests: Mapping[str, str] = field(default_factory=dict)
    profile_sha256: str | None = None


class ModelStore(ABC):
    """Registered models, their immutable versions, tags, aliases and alias events.

    Unknown names raise `NotFoundError` listing what exists: model names for an
    unknown model, versions for an unknown version, aliases for an unknown alias.
    """

    # -- models and versions -----------------------------------------------
    @abstractmethod
    def create_version(self, new: NewModelVersion) -> ModelVersion:
        """Record the next version of ``new.name`` (1 for a new model), race-free."""

    @abstractmethod
    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""

    @abstractmethod
    def get_model(self, name: str) -> RegisteredModel:
        """One model with its tags and aliases."""

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""

    @abstractmethod
    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version of a model."""

    @abstractmethod
    def latest_version(self, name: str) -> ModelVersion:
        """The newest version of a model."""

    # -- tags and descriptions ---------------------------------------------
    @abstractmethod
    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set (or replace) a tag of a model."""

    @abstractmethod
    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove a tag of a model; removing a missing tag is not an error."""

    @abstractmethod
    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set (or replace) a tag of a version (tags are not part of the immutable package)."""

    @abstractmethod
    def set_description(self, name: str, description: str | None, version: int | None) -> None:
        """Set the description of a model, or of one of its versions."""

    # -- aliases -----------------------------------------------------------
    @abstractmethod
    def get_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points at."""

    @abstractmethod
    def set_alias(
        self, name: str, alias: str, version: int, actor: str, reason: str | None
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` (creating it) and record the move, atomically."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str, actor: str, reason: str | None) -> AliasEvent:
        """Remove an alias and record that, atomically."""

    @abstractmethod
    def rollback_alias(self, name: str, alias: str, actor: str, reason: str | None) -> AliasEvent:
        """Move an alias back to where it pointed before its last event, atomically.

        An alias that did not exist before its last event is deleted. The move is
        recorded as a ``rollback`` event, so a second rollback undoes the first.
        """

    @abstractmethod
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias event of a model (or of one alias), oldest first."""

    # -- housekeeping ------------------------------------------------------
    @abstractmethod
    def referenced_digests(self) -> set[str]:
        """Every sha256 a model version points at (what garbage collection must keep)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
