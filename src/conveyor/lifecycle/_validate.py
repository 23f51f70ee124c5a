"""`validate`: the gate a candidate passes before registration — a decision, not an exception.

Three checks, on one test set:

1. **Thresholds**: each named metric of the candidate is at least its threshold
   (at most, for the error metrics log_loss, ece, rmse and mae).
2. **No worse than the champion** (when there is one), by a paired bootstrap. Both
   models are scored on the same ``n_bootstrap`` resamples of the test rows; Δ is the
   candidate's improvement in ``metric`` (candidate minus champion, sign flipped for
   error metrics, so Δ > 0 always means better), and [L, U] its percentile interval at
   ``confidence`` (two-sided: L is the (1 - confidence)/2 quantile). Non-inferiority
   with margin δ = ``min_delta`` ≥ 0 passes when L ≥ -δ; with
   ``require_improvement=True`` the candidate must be better by more than δ: L > δ.
   Resamples where the metric is undefined (one class drawn) are left out and counted.
3. **No slice regression**: in each slice (of at least ``min_slice_rows`` rows, where
   both metrics are defined) the candidate's point estimate may be worse than the
   champion's by at most ε = ``max_slice_drop``.

With no champion, the thresholds decide alone, and a reason says so. A champion
given as a registry reference that does not exist yet (the first model) counts as
no champion, and a reason says that too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.step import step
from conveyor.errors import NotFoundError, ValidationError
from conveyor.lifecycle._evaluate import SliceSpec, model_scores, slice_rows
from conveyor.lifecycle.metrics import (
    GREATER_IS_BETTER,
    Scores,
    metric_values,
    paired_bootstrap,
    point_metrics,
    vectorised_metrics,
)

if TYPE_CHECKING:
    from conveyor.registry.registry import Registry

__all__ = ["GateDecision", "validate"]


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may be registered, why, and the numbers behind it.

    Attributes:
        passed: every check passed.
        reasons: one sentence per check, starting ``pass:``, ``fail:`` or ``note:``.
        evidence: the numbers (JSON-able): the candidate's metrics, the thresholds,
            the champion and the bootstrap comparison, the slices.
    """

    passed: bool
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """The reasons of the checks that failed."""
        return [r for r in self.reasons if r.startswith("fail:")]


@step
def validate(
    candidate: Any,
    test_df: Any,
    target: str,
    *,
    thresholds: Mapping[str, float] | None = None,
    champion: Any = None,
    registry: Registry | None = None,
    metric: str | None = None,
    min_delta: float = 0.0,
    require_improvement: bool = False,
    slices: SliceSpec | None = None,
    max_slice_drop: float = 0.05,
    min_slice_rows: int = 30,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateDecision:
    """Decide whether ``candidate`` is good enough and no worse than ``champion``.

    Args:
        candidate: a fitted model, a `Trained` or a `Tuned`.
        test_df: the test set: features and the ``target`` column.
        target: the name of the target column.
        thresholds: minimum values by metric (maximum for log_loss, ece, rmse, mae);
            when None, ``{"roc_auc": 0.70}`` for a binary classifier with probabilities
            and none otherwise.
        champion: the model to beat: a fitted model, a `LoadedModel`, or a registry
            reference (``"flights@production"``) resolved through ``registry``.
        registry: resolves a champion given as a reference.
        metric: the metric the champion comparison and the slice check use; when
            None, ``roc_auc`` (binary, with probabilities), ``accuracy`` (other
            classifiers) or ``rmse`` (regression).
        min_delta: the margin δ ≥ 0 (in the metric's units).
        require_improvement: require L > δ instead of L ≥ -δ.
        slices: columns of ``test_df`` to slice by (as in `evaluate`).
        max_slice_drop: ε, how much worse than the champion a slice may be.
        min_slice_rows: slices with fewer rows are reported but not gated.
        n_bootstrap: paired resamples for the interval.
        confidence: the interval's two-sided coverage, in (0, 1).
        seed: seeds the resampling.

    Returns:
        The decision; a failed gate is a result, never an exception.

    Raises:
        ValidationError: an argument is malformed (unknown metric or threshold, missing
            target column, a reference with no registry).
        TrainingError: a model predicts NaN.
    """
    _check_arguments(min_delta, max_slice_drop, n_bootstrap, confidence, min_slice_rows)
    if target not in getattr(test_df, "columns", ()):
        raise ValidationError("target", f"{target!r} is not a column of test_df")
    X, y = test_df.drop(columns=[target]), test_df[target]
    groups = slice_rows(X, slices or {})
    scores = model_scores(candidate, X, y)
    metric = metric or _default_metric(scores)
    if metric not in vectorised_metrics(scores):
        raise ValidationError(
            "metric",
            f"{metric!r} cannot be bootstrapped for {scores.task} predictions; "
            f"use one of {list(vectorised_metrics(scores))}",
        )
    metrics = point_metrics(scores)
    reasons: list[str] = []
    evidence: dict[str, Any] = {"metric": metric, "metrics": metrics, "rows": len(scores)}
    limits = _default_thresholds(scores) if thresholds is None else thresholds
    passed = _thresholds(metrics, limits, reasons, evidence)
    rival, label = _champion(champion, registry, reasons)
    if rival is None:
        reasons.append("note: no champion to compare with: the thresholds decide alone")
        evidence["slices"] = _slice_table(scores, None, groups, metric, min_slice_rows)
        return GateDecision(passed, reasons, evidence)
    other = model_scores(rival, X, y)
    evidence["champion"] = {"ref": label, "metrics": point_metrics(other)}
    compared = _compare(
        scores,
        other,
        metric,
        min_delta,
        require_improvement,
        n_bootstrap,
        confidence,
        seed,
        reasons,
        evidence,
    )
    table = _slice_table(scores, other, groups, metric, min_slice_rows)
    evidence["slices"] = table
    sliced = _slice_check(table, metric, max_slice_drop, reasons)
    return GateDecision(passed and compared and sliced, reasons, evidence)


def _check_arguments(
    min_delta: float, max_drop: float, n_bootstrap: int, confidence: float, min_rows: int
) -> None:
    if not min_delta >= 0:
        raise ValidationError("min_delta", f"must be at least 0, got {min_delta}")
    if not max_drop >= 0:
        raise ValidationError("max_slice_drop", f"must be at least 0, got {max_drop}")
    if not 0 < confidence < 1:
        raise ValidationError("confidence", f"must be in (0, 1), got {confidence}")
    if n_bootstrap < 100:
        raise ValidationError("n_bootstrap", f"must be at least 100, got {n_bootstrap}")
    if min_rows < 1:
        raise ValidationError("min_slice_rows", f"must be at least 1, got {min_rows}")


def _default_metric(scores: Scores) -> str:
    if scores.task == "regression":
        return "rmse"
    return "roc_auc" if scores.task == "binary" and scores.proba is not None else "accuracy"


def _default_thresholds(scores: Scores) -> dict[str, float]:
    return {"roc_auc": 0.70} if scores.task == "binary" and scores.proba is not None else {}


def _better(name: str) -> float:
    """+1 where higher is better, -1 for error metrics: Δ = sign x (candidate - champion)."""
    return 1.0 if GREATER_IS_BETTER[name] else -1.0


def _thresholds(
    metrics: Mapping[str, float],
    thresholds: Mapping[str, float],
    reasons: list[str],
    evidence: dict[str, Any],
) -> bool:
    passed = True
    for name, bound in thresholds.items():
        if name not in GREATER_IS_BETTER:
            raise ValidationError(
                f"thresholds[{name!r}]", f"unknown metric; use one of {sorted(GREATER_IS_BETTER)}"
            )
        value = metrics.get(name)
        op = ">=" if GREATER_IS_BETTER[name] else "<="
        if value is None:
            passed = False
            reasons.append(f"fail: {name} is undefined for this model and test set")
            continue
        ok = value >= bound if GREATER_IS_BETTER[name] else value <= bound
        passed &= ok
        verdict = "pass" if ok else "fail"
        shown = op if ok else {">=": "<", "<=": ">"}[op]
        reasons.append(f"{verdict}: {name} {value:.4f} {shown} {bound:.4f} (threshold)")
    if not thresholds:
        reasons.append("note: no thresholds to check")
    evidence["thresholds"] = dict(thresholds)
    return passed


def _champion(
    champion: Any, registry: Registry | None, reasons: list[str]
) -> tuple[Any, str | None]:
    if champion is None:
        return None, None
    if not isinstance(champion, str):
        return champion, getattr(getattr(champion, "version", None), "ref", type(champion).__name__)
    if registry is None:
        raise ValidationError("registry", f"is needed to load the champion {champion!r}")
    try:
        loaded = registry.load_model(champion)
    except NotFoundError as exc:
        reasons.append(f"note: champion {champion!r} not found ({exc})")
        return None, None
    return loaded, f"{champion} ({loaded.version.ref})"


def _compare(
    candidate: Scores,
    champion: Scores,
    metric: str,
    min_delta: float,
    require_improvement: bool,
    n_bootstrap: int,
    confidence: float,
    seed: int,
    reasons: list[str],
    evidence: dict[str, Any],
) -> bool:
    sign = _better(metric)
    ones = np.ones((1, len(candidate)))
    point = sign * float(
        metric_values(metric, candidate, ones)[0] - metric_values(metric, champion, ones)[0]
    )
    deltas = sign * paired_bootstrap(
        metric, candidate, champion, n_bootstrap=n_bootstrap, seed=seed
    )
    valid = deltas[np.isfinite(deltas)]
    result: dict[str, Any] = {
        "delta": point,
        "confidence": confidence,
        "n_bootstrap": n_bootstrap,
        "valid_resamples": int(valid.size),
        "min_delta": min_delta,
        "mode": "improvement" if require_improvement else "non-inferiority",
        "seed": seed,
    }
    evidence["comparison"] = result
    if valid.size == 0:
        reasons.append(f"fail: {metric} is undefined on every resample; cannot compare")
        return False
    low, high = np.quantile(valid, [(1 - confidence) / 2, (1 + confidence) / 2])
    result.update(ci_low=float(low), ci_high=float(high))
    interval = f"Δ {metric} = {point:+.4f}, {confidence:.0%} CI [{low:+.4f}, {high:+.4f}]"
    if require_improvement:
        ok = bool(low > min_delta)
        rule = f"lower bound {'>' if ok else '<='} {min_delta:g} (must improve by more than δ)"
    else:
        ok = bool(low >= -min_delta)
        rule = f"lower bound {'>=' if ok else '<'} {-min_delta + 0.0:g} (non-inferior within δ)"
    reasons.append(f"{'pass' if ok else 'fail'}: vs champion, {interval}; {rule}")
    return ok


def _slice_table(
    candidate: Scores,
    champion: Scores | None,
    groups: Mapping[str, Mapping[str, np.ndarray]],
    metric: str,
    min_rows: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for column, by_label in groups.items():
        table[column] = {}
        for label, rows in by_label.items():
            entry: dict[str, Any] = {"rows": len(rows), "gated": len(rows) >= min_rows}
            entry["candidate"] = (
                point_metrics(candidate.take(rows)).get(metric) if len(rows) else None
            )
            if champion is not None:
                entry["champion"] = (
                    point_metrics(champion.take(rows)).get(metric) if len(rows) else None
                )
            table[column][label] = entry
    return table


def _slice_check(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
    metric: str,
    max_drop: float,
    reasons: list[str],
) -> bool:
    sign = _better(metric)
    worse: list[str] = []
    checked = 0
    for column, by_label in table.items():
        for label, entry in by_label.items():
            mine, theirs = entry.get("candidate"), entry.get("champion")
            if not entry["gated"] or mine is None or theirs is None:
                continue
            checked += 1
            change = sign * (mine - theirs)
            if change < -max_drop:
                worse.append(f"{column}={label} ({theirs:.4f} -> {mine:.4f}, {entry['rows']} rows)")
    if not table:
        return True
    if worse:
        reasons.append(
            f"fail: {metric} worse than the champion by more than {max_drop:g} in "
            f"{len(worse)} slice(s): {'; '.join(worse)}"
        )
        return False
    reasons.append(
        f"pass: no slice worse than the champion by more than {max_drop:g} ({checked} checked)"
    )
    return True
