"""`register_version`: the last offline stage: a gated model becomes a registry version.

The version carries the evaluation's metrics, the gate decision (``gate.*`` tags),
the data fingerprints, the reference profile's sha256 and the code version; an alias
moves only for a passed decision (or ``force=True`` with a reason), as an audited event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.core.entities import SourceVersion
from conveyor.core.step import step
from conveyor.errors import ValidationError
from conveyor.lifecycle._evaluate import Evaluation, finite, unwrap_model
from conveyor.lifecycle._validate import GateDecision

if TYPE_CHECKING:
    from conveyor.core.registry import ModelVersion
    from conveyor.registry.registry import Registry

__all__ = ["register_version"]

# The registry's register_model has no profile argument yet; the sha256 goes in this tag.
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_TAG = 5000


@step(cache=False)
def register_version(
    registry: Registry,
    name: str,
    model: Any,
    input_example: Any,
    *,
    evaluation: Evaluation | None = None,
    decision: GateDecision | None = None,
    run_id: str | None = None,
    data_digests: Mapping[str, str] | None = None,
    profile: bytes | str | None = None,
    transformed_profile: bytes | str | None = None,
    code: SourceVersion | str | None = None,
    alias: str | None = None,
    reason: str | None = None,
    force: bool = False,
    trusted: bool = False,
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> ModelVersion:
    """Register ``model`` as the next version of ``name``, if its gate passed.

    Args:
        registry: the model registry.
        name: the model's name.
        model: a fitted model, a `Trained` or a `Tuned`.
        input_example: a few rows of input (the signature is inferred from them).
        evaluation: its metrics become the version's metrics (finite ones).
        decision: the gate decision; recorded as ``gate.passed``, ``gate.reasons`` (JSON)
            and ``gate.metric``/``gate.delta``/``gate.ci_low`` when it compared.
        run_id: the run that trained the model.
        data_digests: sha256 of the datasets the model was trained on, by name.
        profile: the reference profile (its bytes, stored in the artifact store, or its
            sha256), recorded as the version's ``profile_sha256``.
        transformed_profile: the profile of the training rows after the model's
            transform (`transformed_features`), recorded as the version tag
            ``transformed_profile_sha256``: monitors compare serving's with it (skew).
        code: the code version (a `SourceVersion` or a git sha) when it is not the run's.
        alias: move this alias (``staging``, ``production``…) to the new version.
        reason: why, recorded with the alias move (a default names the gate).
        force: register (and move the alias) although the decision failed; needs a
            ``reason``, and records ``gate.forced``.
        trusted: allow pickle for a model no safe format holds (see the registry).
        description: the version's description.
        tags: more tags for the version.
        actor: who moves the alias (the operating-system user by default).

    Returns:
        The new version.

    Raises:
        ValidationError: the decision failed (and no ``force``), an alias was asked for
            without a decision, ``force`` without a reason, or a malformed profile digest.
    """
    passed = decision is not None and decision.passed
    if decision is not None and not passed and not force:
        failures = "; ".join(decision.failures) or "the gate did not pass"
        raise ValidationError(
            "decision",
            "must have passed to register",
            f"refusing to register {name!r}: {failures}. Pass force=True with a reason to "
            "register it anyway (recorded as gate.forced).",
        )
    if alias is not None and decision is None and not force:
        raise ValidationError(
            "decision", "is required to move an alias: no model reaches an alias but through a gate"
        )
    forced = force and not passed and (decision is not None or alias is not None)
    if forced and not (reason and reason.strip()):
        raise ValidationError("reason", "is required with force=True (it is recorded)")
    all_tags = {**_param_tags(model), **dict(tags or {}), **_gate_tags(decision)}
    if forced:
        all_tags["gate.forced"] = "true"
    if transformed_profile is not None:
        if isinstance(transformed_profile, str) and not _SHA256.fullmatch(transformed_profile):
            raise ValidationError(
                "transformed_profile", "must be the profile's bytes or its sha256 (64 hex digits)"
            )
        digest = _profile_digest(registry, transformed_profile)
        assert digest is not None
        all_tags["transformed_profile_sha256"] = digest
    version = registry.register_model(
        name,
        unwrap_model(model),
        input_example,
        tags=all_tags,
        description=description,
        trusted=trusted,
        run_id=run_id,
        metrics=finite(evaluation.metrics) if evaluation is not None else None,
        data_digests=data_digests,
        profile_sha256=_profile_digest(registry, profile),
        source=SourceVersion(git_sha=code) if isinstance(code, str) else code,
    )
    if alias is not None:
        why = reason or _default_reason(version.version, decision)
        registry.set_alias(name, alias, version.version, reason=why, actor=actor)
    return version


def _param_tags(model: Any) -> dict[str, str]:
    """The hyperparameters a `Tuned` chose or a `Trained` fitted with, as ``param.*`` tags."""
    from conveyor.lifecycle._train import Trained
    from conveyor.lifecycle._tune import Tuned

    if isinstance(model, Tuned):
        params: Mapping[str, Any] = model.best_params
    elif isinstance(model, Trained):
        params = model.params
    else:
        return {}
    return {f"param.{k}": str(v)[:_MAX_TAG] for k, v in params.items()}


def _gate_tags(decision: GateDecision | None) -> dict[str, str]:
    if decision is None:
        return {}
    tags = {"gate.passed": str(decision.passed).lower(), "gate.reasons": _reasons(decision)}
    comparison = decision.evidence.get("comparison") or {}
    for key in ("delta", "ci_low", "ci_high"):
        if key in comparison:
            tags[f"gate.{key}"] = f"{comparison[key]:.6g}"
    if "metric" in decision.evidence:
        tags["gate.metric"] = str(decision.evidence["metric"])
    champion = decision.evidence.get("champion")
    if champion:
        tags["gate.champion"] = str(champion.get("ref"))
    return tags


def _reasons(decision: GateDecision) -> str:
    """The reasons as a JSON list, dropping the last ones if it would exceed a tag's size."""
    reasons = list(decision.reasons)
    text = json.dumps(reasons, ensure_ascii=False)
    while len(text) > _MAX_TAG and reasons:
        reasons = reasons[:-1]
        text = json.dumps([*reasons, "… (more reasons cut)"], ensure_ascii=False)
    return text


def _profile_digest(registry: Registry, profile: bytes | str | None) -> str | None:
    if profile is None or isinstance(profile, str):
        return profile  # a digest is checked by the registry
    return registry.artifacts.put_bytes(profile).sha256


def _default_reason(version: int, decision: GateDecision | None) -> str:
    if decision is None or not decision.passed:
        return f"version {version} registered without a passed gate"
    checks = "; ".join(r for r in decision.reasons if not r.startswith("note:"))
    return f"version {version} passed its gate: {checks}"
