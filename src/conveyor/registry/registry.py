"""`Registry`: register models as immutable, verified packages; load them; move audited aliases.

It works over explicit stores (a `ModelStore` for the records, the
`ContentAddressedStore` for the package files) and, optionally, anything that can
look up a run (a `Tracker` or a `RunStore`) to take metrics and the code version
from the run a model came from.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.core.entities import Run, SourceVersion
from conveyor.core.registry import (
    AliasEvent,
    ModelRef,
    ModelVersion,
    RegisteredModel,
    check_alias,
    check_model_name,
)
from conveyor.errors import ValidationError
from conveyor.stores.artifacts.content import ContentAddressedStore
from conveyor.stores.metadata.models import ModelStore, NewModelVersion

if TYPE_CHECKING:
    from conveyor.registry.loaded import LoadedModel

__all__ = ["Registry", "RunLookup"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_KEY = 250
MAX_VALUE = 5000


class RunLookup(Protocol):
    """What the registry needs from tracking: a run by its id (`Tracker` and `RunStore` fit)."""

    def get_run(self, run_id: str) -> Run:
        """The run with this id; `NotFoundError` if there is none."""
        ...


def default_actor() -> str:
    """The operating-system user, for audit events with no explicit actor."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in some containers
        return "unknown"


class Registry:
    """Named models with numbered, immutable versions and audited aliases.

    Args:
        models: where versions, tags, aliases and events are recorded.
        artifacts: where package files are stored (content-addressed, verified on read).
        tracker: looks up the run a model came from (its metrics and code version).
        source_detector: the code version to record when no run gives one (the
            top-level API passes git detection for the working folder).
    """

    def __init__(
        self,
        models: ModelStore,
        artifacts: ContentAddressedStore,
        tracker: RunLookup | None = None,
        *,
        source_detector: Callable[[], SourceVersion] | None = None,
    ) -> None:
        self.models = models
        self.artifacts = artifacts
        self.tracker = tracker
        self.source_detector = source_detector

    # -- registering and loading -------------------------------------------
    def register_model(
        self,
        name: str,
        model: Any,
        input_example: Any,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        trusted: bool = False,
        run_id: str | None = None,
        metrics: Mapping[str, float] | None = None,
        data_digests: Mapping[str, str] | None = None,
        profile_sha256: str | None = None,
        source: SourceVersion | None = None,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name`` and return that version.

        Args:
            name: the model's name (created with its first version).
            model: a scikit-learn estimator or pipeline, a LightGBM or XGBoost model, an
                ONNX ``ModelProto`` — or, with ``trusted=True``, any picklable object.
            input_example: a few rows of training input (DataFrame or array); the
                signature is inferred from it, and it is stored with the model's output.
            tags: the version's tags.
            description: the version's description.
            trusted: allow pickle for a model no safe format holds. Pickle runs code when
                loaded: only for models you produced. Recorded with the version.
            run_id: the run that trained the model (its metrics and code version are taken).
            metrics: metrics to record (they override the run's).
            data_digests: sha256 of the datasets the model was trained on, by name.
            profile_sha256: the stored reference profile of the training data (kept by
                garbage collection, read by monitoring).
            source: the code version, when it is not the run's (or the working tree's).

        Raises:
            UnsupportedModelError: no safe format holds the model and it is not trusted.
            ValidationError: a name, tag, metric or digest breaks its rule.
            NotFoundError: ``run_id`` names no run.
        """
        from conveyor.registry.package import Lineage, build_package

        check_model_name(name)
        clean_tags = _tags(tags)
        run = self._run(run_id)
        all_metrics = {**(run.metrics if run else {}), **_metrics(metrics)}
        if profile_sha256 is not None:
            _check_digest("profile_sha256", profile_sha256)
        lineage = Lineage(run_id, source or self._source(run), _digests(data_digests))
        package = build_package(
            self.artifacts,
            model,
            input_example,
            trusted=trusted,
            metrics=all_metrics,
            lineage=lineage,
        )
        new = NewModelVersion(
            name=name,
            format=package.format.name,
            manifest_sha256=package.manifest_sha256,
            signature=package.signature,
            environment=package.environment,
            files=package.files,
            trusted=package.trusted,
            run_id=run_id,
            description=description,
            tags=clean_tags,
            metrics=all_metrics,
            source=lineage.source,
            data_digests=package.data_digests,
            profile_sha256=profile_sha256,
        )
        return self.models.create_version(new)

    def load_model(self, ref: str) -> LoadedModel:
        """Load ``name`` (the latest version), ``name/3`` or ``name@production``.

        Raises:
            NotFoundError: the model, version or alias does not exist (listing what does).
            ArtifactCorruptedError: a package file no longer matches its sha256.
            StateError: the package runs code on load and was not registered as trusted.
        """
        from conveyor.registry.package import load_package

        return load_package(self.artifacts, self.resolve(ref))

    def resolve(self, ref: str) -> ModelVersion:
        """The version a reference names."""
        parsed = ModelRef.parse(ref)
        if parsed.alias is not None:
            return self.models.get_alias(parsed.name, parsed.alias)
        if parsed.version is not None:
            return self.models.get_version(parsed.name, parsed.version)
        return self.models.latest_version(parsed.name)

    # -- reading -----------------------------------------------------------
    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        return self.models.list_models()

    def get_model(self, name: str) -> RegisteredModel:
        """One model with its tags and aliases."""
        return self.models.get_model(name)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        return self.models.list_versions(name)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version of a model."""
        return self.models.get_version(name, version)

    # -- aliases -----------------------------------------------------------
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        reason: str | None = None,
        actor: str | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at ``version``; the move is an audited event (who, when, why)."""
        check_alias(alias)
        return self.models.set_alias(name, alias, _version(version), _actor(actor), reason)

    def delete_alias(
        self, name: str, alias: str, reason: str | None = None, actor: str | None = None
    ) -> AliasEvent:
        """Remove ``alias``; an audited event, which `rollback` reverses."""
        check_alias(alias)
        return self.models.delete_alias(name, alias, _actor(actor), reason)

    def get_alias(self, name: str, alias: str) -> ModelVersion:
        """The version ``alias`` points at."""
        return self.models.get_alias(name, check_alias(alias))

    def rollback(
        self, name: str, alias: str, reason: str | None = None, actor: str | None = None
    ) -> AliasEvent:
        """Move ``alias`` back to where it pointed before its last move (an audited event too)."""
        check_alias(alias)
        return self.models.rollback_alias(name, alias, _actor(actor), reason)

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias event of a model (or of one alias), oldest first."""
        return self.models.alias_history(name, alias)

    # -- tags and descriptions ---------------------------------------------
    def set_model_tag(self, name: str, key: str, value: Any) -> None:
        """Set a tag of a model."""
        self.models.set_model_tag(name, *_tag(key, value))

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove a tag of a model."""
        self.models.delete_model_tag(name, key)

    def set_version_tag(self, name: str, version: int, key: str, value: Any) -> None:
        """Set a tag of a version (tags are not part of the immutable package)."""
        self.models.set_version_tag(name, _version(version), *_tag(key, value))

    def set_description(
        self, name: str, description: str | None, version: int | None = None
    ) -> None:
        """Set the description of a model, or of one version."""
        if description is not None and len(description) > MAX_VALUE:
            raise ValidationError("description", f"must be at most {MAX_VALUE} characters")
        self.models.set_description(
            name, description, None if version is None else _version(version)
        )

    # -- internals ---------------------------------------------------------
    def _run(self, run_id: str | None) -> Run | None:
        if run_id is None:
            return None
        if not isinstance(run_id, str) or not 0 < len(run_id) <= 32:
            raise ValidationError("run_id", "must be a run id (1 to 32 characters)")
        return None if self.tracker is None else self.tracker.get_run(run_id)

    def _source(self, run: Run | None) -> SourceVersion:
        if run is not None and run.source.git_sha is not None:
            return run.source
        return self.source_detector() if self.source_detector is not None else SourceVersion()


def _actor(actor: str | None) -> str:
    chosen = default_actor() if actor is None else actor
    if not isinstance(chosen, str) or not 0 < len(chosen) <= 256:
        raise ValidationError("actor", "must be 1 to 256 characters")
    return chosen


def _version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError("version", f"must be a version number from 1, got {version!r}")
    return version


def _tag(key: object, value: object) -> tuple[str, str]:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise ValidationError("tag key", f"must be 1 to {MAX_KEY} characters, got {key!r}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_VALUE:
        raise ValidationError(f"tag {key!r}", f"value must be at most {MAX_VALUE} characters")
    return key, text


def _tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return dict(_tag(k, v) for k, v in (tags or {}).items())


def _metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
            raise ValidationError("metric key", f"must be 1 to {MAX_KEY} characters, got {key!r}")
        try:
            out[key] = float(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"metric {key!r}", f"must be a number: {exc}") from exc
    return out


def _digests(digests: Mapping[str, str] | None) -> dict[str, str]:
    for key, value in (digests or {}).items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
            raise ValidationError("data_digests", f"names must be 1 to {MAX_KEY} characters")
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise ValidationError(
                f"data_digests[{key!r}]", "must be a sha256: 64 lowercase hexadecimal characters"
            )
    return dict(digests or {})


def _check_digest(field: str, value: str) -> None:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValidationError(field, "must be a sha256: 64 lowercase hexadecimal characters")
