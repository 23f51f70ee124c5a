"""The nouns of the model registry as plain, immutable data: models, versions, aliases, events.

Also the pure rules for their names and for references such as ``flights@production``.
Times are epoch milliseconds, as in `conveyor.core.entities`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.core.entities import SourceVersion
from conveyor.errors import ValidationError

__all__ = [
    "AliasAction",
    "AliasEvent",
    "ColumnSpec",
    "Environment",
    "ModelRef",
    "ModelVersion",
    "RegisteredModel",
    "Signature",
    "check_alias",
    "check_model_name",
]

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# `name@latest` always means the newest version; it cannot be moved by hand.
LATEST = "latest"


def check_model_name(name: object) -> str:
    """``name`` if it is a valid model name; `ValidationError` naming the rule otherwise."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ValidationError(
            "model name",
            f"{name!r} must be 1 to 128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return name


def check_alias(alias: object) -> str:
    """``alias`` if it is a valid, movable alias; `ValidationError` naming the rule otherwise."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise ValidationError(
            "alias", f"{alias!r} must match [a-z][a-z0-9_-]{{0,62}} (e.g. staging, production)"
        )
    if alias == LATEST:
        raise ValidationError("alias", "'latest' is reserved: it always means the newest version")
    return alias


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference: ``name`` (the latest version), ``name/3`` or ``name@alias``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """Parse ``name``, ``name/<version>`` or ``name@<alias>``."""
        if not isinstance(ref, str):
            raise ValidationError("model reference", f"must be a string, got {type(ref).__name__}")
        if "@" in ref:
            name, _, alias = ref.partition("@")
            if alias == LATEST:
                return cls(check_model_name(name))
            return cls(check_model_name(name), alias=check_alias(alias))
        if "/" in ref:
            name, _, number = ref.partition("/")
            check_model_name(name)
            if not number.isdigit() or int(number) < 1:
                raise ValidationError(
                    "model reference", f"{ref!r}: the version after '/' must be a number from 1"
                )
            return cls(name, version=int(number))
        return cls(check_model_name(ref))

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name if self.version is None else f"{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One input column: its dtype, whether nulls were seen, and its categories if few."""

    name: str
    dtype: str
    nullable: bool = False
    categories: tuple[Any, ...] | None = None
    ordered: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The column as JSON-able data."""
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}
        if self.categories is not None:
            data["categories"] = list(self.categories)
            data["ordered"] = self.ordered
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """The column from `to_dict`'s data."""
        categories = data.get("categories")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            nullable=bool(data.get("nullable", False)),
            categories=None if categories is None else tuple(categories),
            ordered=bool(data.get("ordered", False)),
        )


@dataclass(frozen=True, slots=True)
class Signature:
    """What a model takes: named, typed columns (``dataframe``) or an array (``tensor``).

    A tensor's ``shape`` has ``None`` for the row count.
    """

    kind: str
    columns: tuple[ColumnSpec, ...] = ()
    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The signature as JSON-able data."""
        if self.kind == "tensor":
            return {"kind": "tensor", "dtype": self.dtype, "shape": list(self.shape or ())}
        return {"kind": "dataframe", "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """The signature from `to_dict`'s data."""
        if data.get("kind") == "tensor":
            return cls("tensor", dtype=str(data["dtype"]), shape=tuple(data["shape"]))
        return cls("dataframe", columns=tuple(ColumnSpec.from_dict(c) for c in data["columns"]))


@dataclass(frozen=True, slots=True)
class Environment:
    """The Python version and exact package versions a model needs to load."""

    python: str
    packages: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The environment as JSON-able data."""
        return {"python": self.python, "packages": dict(sorted(self.packages.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Environment:
        """The environment from `to_dict`'s data."""
        return cls(str(data["python"]), {str(k): str(v) for k, v in data["packages"].items()})


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One immutable, numbered package of a named model, as recorded in the metadata store.

    ``files`` maps each file of the package to its sha256; ``manifest_sha256`` is the
    digest of the manifest that lists them, so the package can be verified end to end.
    ``trusted`` records that the package executes code on load and was vouched for.
    """

    name: str
    version: int
    format: str
    created_at: int
    manifest_sha256: str
    signature: Signature
    environment: Environment
    trusted: bool = False
    run_id: str | None = None
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    source: SourceVersion = field(default_factory=SourceVersion)
    data_digests: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    profile_sha256: str | None = None

    @property
    def ref(self) -> str:
        """``name/version``, which `load_model` accepts."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model: its description, tags, newest version number and aliases."""

    name: str
    created_at: int
    updated_at: int
    latest_version: int
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, int] = field(default_factory=dict)


class AliasAction(enum.StrEnum):
    """What an alias event did."""

    SET = "set"
    DELETE = "delete"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class AliasEvent:
    """One audited move of an alias: who, when, why, from which version to which.

    ``from_version`` is None when the alias was created; ``to_version`` is None when it
    was deleted.
    """

    id: int
    name: str
    alias: str
    action: AliasAction
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    created_at: int
