"""Canary with automatic rollback: a share of an alias's traffic to a new version, then a verdict.

`start_canary` stores a `Traffic` policy (the server sends ``share`` of the
alias's requests to the canary version and writes each answer to the capture log
with its route). `evaluate_canary` reads the capture log since the start and,
once the canary answered ``canary.requests`` requests (or ``canary.duration_s``
passed), compares it with the primary:

- **errors**: canary error rate (answers with status ≥ 500) minus the primary's,
  at most ``max_error_rate_delta``;
- **latency**: canary p95 latency over the primary's, at most ``max_latency_ratio``;
- **quality** (when labels arrived for at least ``min_labels`` rows on each side):
  the canary's ``metric`` (accuracy, or mae/rmse with the sign flipped so that
  higher is better) minus the primary's, at least ``min_quality_delta``.

All pass: the alias moves to the canary (an audited event naming the canary's
attempt) and the traffic policy is cleared. One fails: the traffic policy is
cleared (all traffic back to the alias's version, which never moved) and an
alert is raised. Either way the comparisons are stored as checks of the attempt
(``canary.errors``, ``canary.latency``, ``canary.quality``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.loop import CheckRecord, NewAlert, Traffic
from conveyor.delivery.checks import CheckResult
from conveyor.errors import StateError, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.delivery.policy import CanaryPolicy, DeploymentPolicy
    from conveyor.registry import Registry
    from conveyor.stores.artifacts.base import ByteStore
    from conveyor.stores.metadata.loop import LoopStore

__all__ = ["CanaryDecision", "canary_status", "evaluate_canary", "start_canary"]

_PREDICTION_COLUMNS = ("out.prediction", "out.predict", "out.label")


@dataclass(frozen=True)
class CanaryDecision:
    """What an evaluation of a canary decided, and why.

    Attributes:
        model: the model.
        alias: the alias whose traffic is split.
        action: ``none`` (no canary running), ``wait`` (not enough evidence yet),
            ``promote`` (the alias moved to the canary) or ``rollback`` (the canary
            was stopped; the alias never moved).
        version: the canary version (None with ``none``).
        primary_version: the version the alias serves.
        checks: the comparisons (stored as checks once decided).
        reasons: one sentence per comparison.
        evidence: the numbers: requests, error rates, latencies, quality per side.
        attempt: the attempt id the checks are stored under.
        event_id: the alias event of a promotion.
        alert_id: the alert raised by a rollback.
    """

    model: str
    alias: str
    action: str
    version: int | None = None
    primary_version: int | None = None
    checks: list[CheckResult] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    attempt: str = ""
    event_id: int | None = None
    alert_id: int | None = None


def _state_key(model: str, alias: str) -> str:
    return f"delivery.canary.{model}.{alias}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def start_canary(
    model: str,
    version: int,
    *,
    alias: str = "production",
    share: float,
    loop_store: LoopStore,
    actor: str,
    reason: str,
    attempt: str | None = None,
    now_ms: int | None = None,
) -> Traffic:
    """Send ``share`` of ``alias``'s requests to ``version``, as a canary.

    The version must have cleared its checks (and any approval) for ``alias``:
    `conveyor.delivery.deploy` does that and starts the canary itself where the
    policy has one.

    Args:
        model: the model.
        version: the canary version.
        alias: the served alias whose traffic is split.
        share: the share of requests for the canary (0 < share < 1).
        loop_store: where the traffic policy and the canary's start are stored.
        actor: who starts it.
        reason: why.
        attempt: the deploy attempt that cleared it (found when None).
        now_ms: the start time (now by default; for replays).

    Raises:
        ValidationError: ``share`` or ``version`` is out of range.
        StateError: the version has not cleared its checks for ``alias``.
    """
    from conveyor.delivery.promotion import stage_cleared

    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
        raise ValidationError(
            "share", f"must be a number between 0 and 1 (exclusive), got {share!r}"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError("version", f"must be a version number from 1, got {version!r}")
    cleared = attempt or stage_cleared(loop_store, model, version, alias)
    if cleared is None:
        raise StateError(
            f"{model}/{version} has not passed its checks for {alias}; a canary takes real "
            f"traffic, so run first: conveyor deploy {model}/{version} --to {alias}"
        )
    previous = loop_store.get_traffic(model, alias)
    traffic = loop_store.set_traffic(
        Traffic(
            model, alias, version, float(share),
            previous.shadow_version if previous else None,
            previous.sticky_key if previous else None,
            actor=actor, reason=reason,
        )
    )  # fmt: skip
    started = _now_ms() if now_ms is None else int(now_ms)
    state = {"attempt": cleared, "version": version, "started_at": started, "actor": actor}
    loop_store.set_state(_state_key(model, alias), json.dumps(state))
    return traffic


def canary_status(loop_store: LoopStore, model: str, alias: str) -> dict[str, Any] | None:
    """The running canary of ``alias`` (version, share, start, attempt), or None."""
    traffic = loop_store.get_traffic(model, alias)
    if traffic is None or traffic.canary_version is None:
        return None
    raw = loop_store.get_state(_state_key(model, alias))
    state = json.loads(raw) if raw else {}
    if state.get("version") != traffic.canary_version:
        state = {}
    return {
        "model": model,
        "alias": alias,
        "version": traffic.canary_version,
        "share": traffic.canary_share,
        "started_at": int(state.get("started_at") or traffic.updated_at),
        "attempt": str(state.get("attempt", "")),
        "actor": traffic.actor,
        "reason": traffic.reason,
    }


# -- the comparison ------------------------------------------------------------------------


def _per_request(table: pa.Table) -> dict[str, np.ndarray]:
    """Latency and status per request (a request's rows share them)."""
    if table.num_rows == 0:
        return {"latency_ms": np.array([]), "status": np.array([])}
    grouped = table.group_by("request_id", use_threads=False).aggregate(
        [("latency_ms", "max"), ("status", "max")]
    )
    return {
        "latency_ms": np.asarray(grouped.column("latency_ms_max").to_numpy(zero_copy_only=False)),
        "status": np.asarray(grouped.column("status_max").to_numpy(zero_copy_only=False)),
    }


def _side(table: pa.Table) -> dict[str, Any]:
    per = _per_request(table)
    n = len(per["status"])
    errors = int((per["status"] >= 500).sum()) if n else 0
    latency = per["latency_ms"]
    return {
        "requests": n,
        "rows": table.num_rows,
        "error_rate": errors / n if n else 0.0,
        "p50_ms": float(np.percentile(latency, 50)) if n else None,
        "p95_ms": float(np.percentile(latency, 95)) if n else None,
    }


def _quality(table: pa.Table, metric: str) -> tuple[float | None, int]:
    """The metric on the labelled rows (higher is better), and how many rows had labels."""
    if "label" not in table.column_names:
        return None, 0
    column = next((c for c in _PREDICTION_COLUMNS if c in table.column_names), None)
    if column is None:
        outputs = [c for c in table.column_names if c.startswith("out.")]
        column = outputs[0] if outputs else None
    if column is None:
        return None, 0
    labels = table.column("label").to_pylist()
    predicted = table.column(column).to_pylist()
    # Rows a failed request left without a prediction count as errors, not as quality.
    pairs = [
        (p, t) for p, t in zip(predicted, labels, strict=True) if t is not None and p is not None
    ]
    if not pairs:
        return None, 0
    if metric == "accuracy":
        hits = [_equal(p, t) for p, t in pairs]
        return float(np.mean(hits)), len(pairs)
    errors = np.array([float(p) - float(t) for p, t in pairs])
    value = np.mean(np.abs(errors)) if metric == "mae" else np.sqrt(np.mean(errors**2))
    return -float(value), len(pairs)


def _equal(predicted: Any, truth: Any) -> bool:
    try:
        return float(predicted) == float(truth)
    except (TypeError, ValueError):
        return str(predicted) == str(truth)


def _compare(
    canary: pa.Table, primary: pa.Table, spec: CanaryPolicy
) -> tuple[list[CheckResult], dict[str, Any]]:
    ours, theirs = _side(canary), _side(primary)
    evidence: dict[str, Any] = {"canary": ours, "primary": theirs}
    results = []
    delta = ours["error_rate"] - theirs["error_rate"]
    results.append(
        CheckResult(
            "canary.errors",
            delta <= spec.max_error_rate_delta,
            f"error rate {ours['error_rate']:.2%} vs primary {theirs['error_rate']:.2%} "
            f"(delta {delta:+.2%}, at most {spec.max_error_rate_delta:+.2%})",
            {"canary": ours["error_rate"], "primary": theirs["error_rate"], "delta": delta},
        )
    )
    if ours["p95_ms"] is None or not theirs["p95_ms"]:
        note = "no primary requests to compare latency with" if ours["p95_ms"] else "no requests"
        results.append(CheckResult("canary.latency", ours["p95_ms"] is not None, note, {}))
    else:
        ratio = ours["p95_ms"] / theirs["p95_ms"]
        results.append(
            CheckResult(
                "canary.latency",
                ratio <= spec.max_latency_ratio,
                f"p95 {ours['p95_ms']:.2f} ms vs primary {theirs['p95_ms']:.2f} ms "
                f"(ratio {ratio:.2f}, at most {spec.max_latency_ratio:g})",
                {
                    "canary_p95_ms": ours["p95_ms"],
                    "primary_p95_ms": theirs["p95_ms"],
                    "ratio": ratio,
                },
            )
        )
    results.append(_quality_check(canary, primary, spec))
    return results, evidence


def _quality_check(canary: pa.Table, primary: pa.Table, spec: CanaryPolicy) -> CheckResult:
    (ours, n_ours), (theirs, n_theirs) = (
        _quality(canary, spec.metric),
        _quality(primary, spec.metric),
    )
    evidence = {"metric": spec.metric, "canary_labels": n_ours, "primary_labels": n_theirs}
    if ours is None or theirs is None or min(n_ours, n_theirs) < spec.min_labels:
        detail = (
            f"not judged: {n_ours} canary and {n_theirs} primary rows have labels "
            f"(need {spec.min_labels} each)"
        )
        return CheckResult("canary.quality", True, detail, evidence)
    delta = ours - theirs
    sign = -1.0 if spec.metric in ("mae", "rmse") else 1.0
    evidence |= {"canary": sign * ours, "primary": sign * theirs, "delta": delta}
    detail = (
        f"{spec.metric} {sign * ours:.4g} vs primary {sign * theirs:.4g} on labelled rows "
        f"(improvement {delta:+.4g}, at least {spec.min_quality_delta:+.4g})"
    )
    return CheckResult("canary.quality", delta >= spec.min_quality_delta, detail, evidence)


def evaluate_canary(
    model: str,
    *,
    alias: str = "production",
    policy: DeploymentPolicy,
    loop_store: LoopStore,
    byte_store: ByteStore,
    registry: Registry,
    now_ms: int | None = None,
    actor: str = "conveyor-canary",
) -> CanaryDecision:
    """Judge the running canary of ``alias`` on the capture log; promote or roll back when due.

    Args:
        model: the model.
        alias: the served alias.
        policy: the model's policy (its ``canary`` section; defaults when it has none).
        loop_store: traffic, checks and alerts.
        byte_store: the artifact store's byte store, where capture and feedback live.
        registry: moves the alias on a promotion.
        now_ms: the time of the evaluation (now by default; for replays).
        actor: recorded with a promotion or rollback.
    """
    from conveyor.delivery.policy import CanaryPolicy
    from conveyor.stores.capture import join_feedback, read_capture, read_feedback

    status = canary_status(loop_store, model, alias)
    if status is None:
        return CanaryDecision(model, alias, "none", reasons=[f"no canary runs on {alias}"])
    spec = policy.canary or CanaryPolicy()
    now = _now_ms() if now_ms is None else int(now_ms)
    version, started = int(status["version"]), int(status["started_at"])
    primary_version = _primary(registry, model, alias)
    captured = read_capture(byte_store, model, started, now + 1)
    labelled = join_feedback(captured, read_feedback(byte_store, model))
    canary = _rows(labelled, "canary", version)
    primary = _rows(labelled, "primary", None)
    results, evidence = _compare(canary, primary, spec)
    elapsed_s = (now - started) / 1000
    evidence |= {"elapsed_s": elapsed_s, "share": status["share"], "since_ms": started}
    done = evidence["canary"]["requests"] >= spec.requests or (
        spec.duration_s is not None and elapsed_s >= spec.duration_s
    )
    base = CanaryDecision(
        model, alias, "wait", version, primary_version, results,
        [r.detail for r in results], evidence, status["attempt"],
    )  # fmt: skip
    if not done:
        wanted = f"{spec.requests} requests" + (
            f" or {spec.duration_s:g} s" if spec.duration_s is not None else ""
        )
        reason = f"waiting: {evidence['canary']['requests']} canary requests so far, need {wanted}"
        return _replace(base, reasons=[reason, *base.reasons])
    if evidence["canary"]["requests"] == 0:
        results = [CheckResult("canary.errors", False, "the canary answered no requests", {})]
        base = _replace(base, checks=results, reasons=[results[0].detail])
    return _decide(base, loop_store, registry, actor)


def _replace(decision: CanaryDecision, **changes: Any) -> CanaryDecision:
    import dataclasses

    return dataclasses.replace(decision, **changes)


def _primary(registry: Registry, model: str, alias: str) -> int | None:
    from conveyor.errors import NotFoundError

    try:
        return registry.get_alias(model, alias).version
    except NotFoundError:
        return None


def _rows(table: pa.Table, route: str, version: int | None) -> pa.Table:
    import pyarrow.compute as pc

    mask = pc.equal(table.column("route"), route)
    if version is not None:
        mask = pc.and_(mask, pc.equal(table.column("version"), version))
    return table.filter(mask)


def _decide(
    decision: CanaryDecision, loop_store: LoopStore, registry: Registry, actor: str
) -> CanaryDecision:
    from conveyor.delivery.promotion import move_alias

    model, alias, version = decision.model, decision.alias, decision.version
    assert version is not None
    attempt = decision.attempt
    passed = all(r.passed for r in decision.checks)
    loop_store.add_checks(
        [
            CheckRecord(model, version, alias, r.name, r.passed, r.detail, r.evidence, attempt)
            for r in decision.checks
        ]
    )
    previous = loop_store.get_traffic(model, alias)
    summary = "; ".join(r.detail for r in decision.checks)
    verdict = "promoted" if passed else "rolled back"
    loop_store.set_traffic(
        Traffic(
            model, alias, None, 0.0,
            previous.shadow_version if previous else None,
            previous.sticky_key if previous else None,
            actor=actor, reason=f"canary {attempt} {verdict}",
        )
    )  # fmt: skip
    loop_store.set_state(_state_key(model, alias), json.dumps({}))
    if passed:
        target = registry.get_version(model, version)
        names = ", ".join(r.name for r in decision.checks)
        why = f"canary {attempt}: {names} passed ({summary})"
        event = move_alias(registry, loop_store, target, alias, attempt, why, actor)
        return _replace(decision, action="promote", event_id=event.id)
    failed = [r for r in decision.checks if not r.passed]
    alert = loop_store.add_alert(
        NewAlert(
            source="canary",
            rule="canary_rollback",
            severity="warning",
            message=f"canary {model}/{version} on {alias} rolled back: "
            + "; ".join(r.detail for r in failed),
            model=model,
            version=version,
            payload={"attempt": attempt, **decision.evidence},
        )
    )
    return _replace(decision, action="rollback", alert_id=alert.id)
