"""Deployment policies: the ``deployments:`` section of ``conveyor.yaml``, per model, validated.

A policy says through which stages (aliases) a model moves, which of them need a
person's approval and whose, what its server may use (memory, CPU), the SLO and
load of the load check, the quality targets and the gate against the champion,
and how a canary is judged. Everything has a default; with no section at all a
model gets staged promotion: ``staging`` automatically after the checks,
``production`` after the checks and an approval.

Example::

    deployments:
      flights:
        stages: [staging, production]
        production: {approval: required, approvers: [alice, bob]}   # or approval: auto
        resources: {memory_mb: 512, cpu: 1}
        slo: {p50_ms: 20, p99_ms: 100, error_rate: 0.0}
        load: {requests: 200, concurrency: 4}
        quality: {roc_auc: {min: 0.65}}
        gate: {against: production, metric: roc_auc, max_drop: 0.01}
        canary: {share: 0.2, requests: 500, max_error_rate_delta: 0.01,
                 max_latency_ratio: 1.5, min_quality_delta: -0.02}
        sandbox: {memory_mb: 4096, timeout_s: 60, network: isolated}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConfigError, ValidationError

__all__ = [
    "SLO",
    "CanaryPolicy",
    "DeploymentPolicy",
    "Gate",
    "LoadSpec",
    "MetricTarget",
    "Resources",
    "SandboxSpec",
    "StagePolicy",
    "parse_deployments",
    "parse_policy",
    "policy_for",
]

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_SECTION = "deployments"
_KEYS = ("stages", "resources", "slo", "load", "quality", "gate", "canary", "sandbox")
# Metrics where a smaller value is better (as in conveyor.lifecycle.metrics).
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "rmse", "mae"})


@dataclass(frozen=True, slots=True)
class StagePolicy:
    """How a version reaches one stage: automatically after the checks, or by approval.

    Attributes:
        name: the stage, which is also the alias moved (``staging``, ``production``).
        approval: ``auto`` or ``required``.
        approvers: who may approve (empty: anyone named, and the approval is recorded).
    """

    name: str
    approval: str = "auto"
    approvers: tuple[str, ...] = ()

    @property
    def requires_approval(self) -> bool:
        """Whether a person must approve before the alias moves."""
        return self.approval == "required"

    def may_approve(self, actor: str) -> bool:
        """Whether ``actor`` is allowed to approve a move to this stage."""
        return not self.approvers or actor in self.approvers


@dataclass(frozen=True, slots=True)
class Resources:
    """What the deployment gives one server: memory (MiB) and CPU cores."""

    memory_mb: float = 1024.0
    cpu: float = 1.0


@dataclass(frozen=True, slots=True)
class SLO:
    """Latency percentiles (ms, seen by the client) and the share of failed requests allowed."""

    p50_ms: float = 100.0
    p99_ms: float = 1000.0
    error_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """The load check's size: ``requests`` requests of ``rows`` rows, ``concurrency`` at once."""

    requests: int = 200
    concurrency: int = 4
    rows: int = 1


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """Bounds a metric must keep on the holdout (either may be None)."""

    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> str | None:
        """Why ``value`` misses the target, or None when it meets it."""
        if math.isnan(value):
            return "is not defined (NaN)"
        if self.min is not None and value < self.min:
            return f"{value:.4g} < min {self.min:.4g}"
        if self.max is not None and value > self.max:
            return f"{value:.4g} > max {self.max:.4g}"
        return None


@dataclass(frozen=True, slots=True)
class Gate:
    """The comparison with the version an alias serves now.

    Attributes:
        against: the alias whose version is the champion (None: the last stage,
            ``production`` by default).
        metric: the metric compared (None: the first quality target, else roc_auc,
            accuracy or rmse, whichever the evaluation has).
        max_drop: how much worse than the champion the candidate may be.
    """

    against: str | None = None
    metric: str | None = None
    max_drop: float = 0.01


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """How a canary is run and judged against the version the alias serves.

    Attributes:
        share: the share of the alias's requests sent to the canary (0 < share < 1).
        requests: decide once the canary answered this many requests.
        duration_s: or once this much time passed (None: wait for ``requests``).
        max_error_rate_delta: canary error rate minus primary error rate, at most.
        max_latency_ratio: canary p95 latency over primary p95 latency, at most.
        min_quality_delta: canary quality minus primary quality (on labelled rows),
            at least (negative: how much worse it may be).
        metric: the quality metric on labelled rows (accuracy, mae or rmse).
        min_labels: labelled rows each side needs before quality is judged.
    """

    share: float = 0.1
    requests: int = 500
    duration_s: float | None = None
    max_error_rate_delta: float = 0.01
    max_latency_ratio: float = 1.5
    min_quality_delta: float = -0.02
    metric: str = "accuracy"
    min_labels: int = 30


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """Limits of the sandboxed server process of the infra and load checks.

    Attributes:
        memory_mb: its address-space limit (``RLIMIT_AS``; virtual memory, so well
            above what it uses).
        timeout_s: how long it may take to start and answer health.
        network: ``isolated`` (a new network namespace when ``unshare`` allows) or
            ``allowed``.
    """

    memory_mb: float = 8192.0
    timeout_s: float = 60.0
    network: str = "isolated"


def _default_stages() -> dict[str, StagePolicy]:
    return {
        "staging": StagePolicy("staging", "auto"),
        "production": StagePolicy("production", "required"),
    }


@dataclass(frozen=True, slots=True)
class DeploymentPolicy:
    """A model's deployment policy (see the module docstring for the YAML)."""

    stages: tuple[str, ...] = ("staging", "production")
    stage_policies: Mapping[str, StagePolicy] = field(default_factory=_default_stages)
    resources: Resources = field(default_factory=Resources)
    slo: SLO = field(default_factory=SLO)
    load: LoadSpec = field(default_factory=LoadSpec)
    quality: Mapping[str, MetricTarget] = field(default_factory=dict)
    gate: Gate = field(default_factory=Gate)
    canary: CanaryPolicy | None = None
    sandbox: SandboxSpec = field(default_factory=SandboxSpec)

    def stage(self, name: str) -> StagePolicy:
        """The policy of stage ``name``.

        Raises:
            ValidationError: the policy has no such stage (the message lists them).
        """
        if name not in self.stages:
            raise ValidationError(
                "stage",
                f"must be one of the policy's stages {', '.join(self.stages)}, got {name!r}",
            )
        return self.stage_policies.get(name) or StagePolicy(name)

    def before(self, name: str) -> tuple[str, ...]:
        """The stages a version must pass before ``name`` (staging before production)."""
        return self.stages[: self.stages.index(self.stage(name).name)]

    def gate_alias(self) -> str:
        """The alias whose version a candidate is compared with (the champion's)."""
        return self.gate.against or self.stages[-1]


def _where(*path: str) -> str:
    return ".".join((_SECTION, *path))


def _mapping(value: Any, *path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(*path)}: must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{_where(*path)}: keys must be strings, got {key!r}")
    return value


def _only(value: Mapping[str, Any], allowed: tuple[str, ...], *path: str) -> None:
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{_where(*path, unknown[0])}: unknown key; allowed: {', '.join(allowed)}"
        )


def _number(
    value: Any,
    *path: str,
    low: float = 0.0,
    high: float = math.inf,
    open_low: bool = False,
    integer: bool = False,
) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer and not float(value).is_integer():
        ok = False
    number = float(value) if ok else math.nan
    if ok and (math.isnan(number) or number > high or number < low or (open_low and number == low)):
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"above {low:g}" if open_low else f"at least {low:g}"
        upper = "" if math.isinf(high) else f" and at most {high:g}"
        raise ConfigError(f"{_where(*path)}: must be {kind} {bound}{upper}, got {value!r}")
    return number


def _stage_policy(name: str, value: Any, model: str) -> StagePolicy:
    data = _mapping(value, model, name)
    _only(data, ("approval", "approvers"), model, name)
    default = "required" if name == "production" else "auto"
    approval = data.get("approval", default)
    if approval not in ("auto", "required"):
        raise ConfigError(
            f"{_where(model, name, 'approval')}: must be 'auto' or 'required', got {approval!r}"
        )
    approvers = data.get("approvers", [])
    if isinstance(approvers, str):
        approvers = [approvers]
    if not isinstance(approvers, list) or not all(
        isinstance(a, str) and a.strip() for a in approvers
    ):
        raise ConfigError(
            f"{_where(model, name, 'approvers')}: must be a list of names, got {approvers!r}"
        )
    return StagePolicy(name, str(approval), tuple(a.strip() for a in approvers))


def _stages(value: Any, model: str) -> tuple[str, ...]:
    if value is None:
        return ("staging", "production")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{_where(model, 'stages')}: must be a non-empty list of alias names")
    for stage in value:
        if not isinstance(stage, str) or not _ALIAS.match(stage) or stage in _KEYS:
            raise ConfigError(
                f"{_where(model, 'stages')}: {stage!r} is not a valid stage name (an alias: a "
                "letter, then letters, digits, '_' or '-', not one of the policy's keys)"
            )
    if len(set(value)) != len(value):
        raise ConfigError(f"{_where(model, 'stages')}: names a stage twice")
    return tuple(value)


def _resources(value: Any, model: str) -> Resources:
    data = _mapping(value, model, "resources")
    _only(data, ("memory_mb", "cpu"), model, "resources")
    d = Resources()
    return Resources(
        memory_mb=_number(
            data.get("memory_mb", d.memory_mb), model, "resources", "memory_mb", open_low=True
        ),
        cpu=_number(data.get("cpu", d.cpu), model, "resources", "cpu", open_low=True),
    )


def _slo(value: Any, model: str) -> SLO:
    data = _mapping(value, model, "slo")
    _only(data, ("p50_ms", "p99_ms", "error_rate"), model, "slo")
    d = SLO()
    slo = SLO(
        p50_ms=_number(data.get("p50_ms", d.p50_ms), model, "slo", "p50_ms", open_low=True),
        p99_ms=_number(data.get("p99_ms", d.p99_ms), model, "slo", "p99_ms", open_low=True),
        error_rate=_number(
            data.get("error_rate", d.error_rate), model, "slo", "error_rate", high=1
        ),
    )
    if slo.p99_ms < slo.p50_ms:
        raise ConfigError(f"{_where(model, 'slo', 'p99_ms')}: must be at least p50_ms")
    return slo


def _load(value: Any, model: str) -> LoadSpec:
    data = _mapping(value, model, "load")
    _only(data, ("requests", "concurrency", "rows"), model, "load")
    d = LoadSpec()
    where = (model, "load")
    return LoadSpec(
        requests=int(
            _number(
                data.get("requests", d.requests),
                *where,
                "requests",
                low=1,
                high=100_000,
                integer=True,
            )
        ),
        concurrency=int(
            _number(
                data.get("concurrency", d.concurrency),
                *where,
                "concurrency",
                low=1,
                high=256,
                integer=True,
            )
        ),
        rows=int(
            _number(data.get("rows", d.rows), *where, "rows", low=1, high=10_000, integer=True)
        ),
    )


def _quality(value: Any, model: str) -> dict[str, MetricTarget]:
    data = _mapping(value, model, "quality")
    targets: dict[str, MetricTarget] = {}
    for metric, bound in data.items():
        where = (model, "quality", metric)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            number = _number(bound, *where, low=-math.inf)
            lower = metric in LOWER_IS_BETTER
            targets[metric] = MetricTarget(max=number) if lower else MetricTarget(min=number)
            continue
        spec = _mapping(bound, *where)
        _only(spec, ("min", "max"), *where)
        if not spec:
            raise ConfigError(f"{_where(*where)}: give min, max or both")
        low = (
            None if spec.get("min") is None else _number(spec["min"], *where, "min", low=-math.inf)
        )
        high = (
            None if spec.get("max") is None else _number(spec["max"], *where, "max", low=-math.inf)
        )
        if low is not None and high is not None and low > high:
            raise ConfigError(f"{_where(*where)}: min must not be above max")
        targets[metric] = MetricTarget(low, high)
    return targets


def _gate(value: Any, model: str) -> Gate:
    data = _mapping(value, model, "gate")
    _only(data, ("against", "metric", "max_drop"), model, "gate")
    against = data.get("against")
    if against is not None and (not isinstance(against, str) or not _ALIAS.match(against)):
        raise ConfigError(f"{_where(model, 'gate', 'against')}: must be an alias, got {against!r}")
    metric = data.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError(f"{_where(model, 'gate', 'metric')}: must be a metric name")
    max_drop = _number(data.get("max_drop", Gate().max_drop), model, "gate", "max_drop")
    return Gate(against, metric, max_drop)


def _canary(value: Any, model: str) -> CanaryPolicy | None:
    if value is None:
        return None
    data = _mapping(value, model, "canary")
    allowed = tuple(CanaryPolicy.__dataclass_fields__)
    _only(data, allowed, model, "canary")
    d = CanaryPolicy()
    w = (model, "canary")
    duration = data.get("duration_s")
    metric = data.get("metric", d.metric)
    if metric not in ("accuracy", "mae", "rmse"):
        raise ConfigError(f"{_where(*w, 'metric')}: must be accuracy, mae or rmse, got {metric!r}")
    return CanaryPolicy(
        share=_number(data.get("share", d.share), *w, "share", open_low=True, high=0.999),
        requests=int(
            _number(data.get("requests", d.requests), *w, "requests", low=1, integer=True)
        ),
        duration_s=None if duration is None else _number(duration, *w, "duration_s", open_low=True),
        max_error_rate_delta=_number(
            data.get("max_error_rate_delta", d.max_error_rate_delta),
            *w,
            "max_error_rate_delta",
            high=1,
        ),
        max_latency_ratio=_number(
            data.get("max_latency_ratio", d.max_latency_ratio),
            *w,
            "max_latency_ratio",
            open_low=True,
        ),
        min_quality_delta=_number(
            data.get("min_quality_delta", d.min_quality_delta),
            *w,
            "min_quality_delta",
            low=-math.inf,
        ),
        metric=str(metric),
        min_labels=int(
            _number(data.get("min_labels", d.min_labels), *w, "min_labels", low=1, integer=True)
        ),
    )


def _sandbox(value: Any, model: str) -> SandboxSpec:
    data = _mapping(value, model, "sandbox")
    _only(data, ("memory_mb", "timeout_s", "network"), model, "sandbox")
    d = SandboxSpec()
    network = data.get("network", d.network)
    if network not in ("isolated", "allowed"):
        raise ConfigError(
            f"{_where(model, 'sandbox', 'network')}: must be 'isolated' or 'allowed', "
            f"got {network!r}"
        )
    return SandboxSpec(
        memory_mb=_number(
            data.get("memory_mb", d.memory_mb), model, "sandbox", "memory_mb", low=256
        ),
        timeout_s=_number(
            data.get("timeout_s", d.timeout_s), model, "sandbox", "timeout_s", open_low=True
        ),
        network=str(network),
    )


def parse_policy(model: str, section: Any) -> DeploymentPolicy:
    """One model's policy from its mapping (None: the defaults).

    Raises:
        ConfigError: a key is unknown or a value breaks its rule; the message names
            the key (``deployments.flights.slo.p99_ms``) and the rule.
    """
    data = _mapping(section, model)
    stages = _stages(data.get("stages"), model)
    _only(data, (*_KEYS, *stages), model)
    stage_policies = {name: _stage_policy(name, data.get(name), model) for name in stages}
    return DeploymentPolicy(
        stages=stages,
        stage_policies=stage_policies,
        resources=_resources(data.get("resources"), model),
        slo=_slo(data.get("slo"), model),
        load=_load(data.get("load"), model),
        quality=_quality(data.get("quality"), model),
        gate=_gate(data.get("gate"), model),
        canary=_canary(data.get("canary"), model),
        sandbox=_sandbox(data.get("sandbox"), model),
    )


def parse_deployments(section: Any) -> dict[str, DeploymentPolicy]:
    """The ``deployments:`` section of ``conveyor.yaml``: a policy per model name.

    Args:
        section: the section as read from YAML (None when absent).

    Raises:
        ConfigError: the section is not a mapping of model names to mappings, or a
            policy breaks a rule (the message names the key).
    """
    data = _mapping(section)
    return {model: parse_policy(model, value) for model, value in data.items()}


def policy_for(policies: Mapping[str, DeploymentPolicy], model: str) -> DeploymentPolicy:
    """The policy of ``model``; the default staged promotion when none is declared."""
    return policies.get(model) or DeploymentPolicy()
