"""Monitors: evaluate windows of captured traffic against a model version's reference.

`evaluate_window` reads the captured rows of one window (one route, ``primary``
by default) and finds, in this order:

* **serving**: request latency p50/p99 and the share of 5xx answers (all rows);
* **drift** of the inputs (answered rows only) against the reference profile the
  registry stores with the version that answered most rows of the window (the
  monitor's alias's version when none did), in sketch mode from the stored
  profile, or exact from ``drift.reference`` (a Parquet file, read once per
  process);
* **prediction drift**: the outputs (``out.*``) against the version's prediction
  reference: the profile whose sha256 a version tag ``prediction_profile_sha256``
  names if registration stored one, else the outputs of the first window of at
  least ``min_rows`` rows that version served (the baseline, stored as an
  artifact with its sha256 in the loop store's state
  ``monitor:<name>:predictions:v<version>``; that window has no prediction drift);
* **training-serving skew**: the training profile against the merged profile of
  every window the version served so far (state ``monitor:<name>:serving:v<n>``),
  so a steady difference (a feature computed differently online) shows even when
  no single window drifts;
* **quality**: the rows joined with the labels that arrived by ``now_ms``:
  task metrics, label coverage and delay (`conveyor.monitoring.quality`).

It stores an `Evaluation` (status ``ok``, ``drift``, ``degraded``, ``error`` or
``empty``; ``metrics`` holds the numbers, see `evaluate_window`) with a
self-contained HTML report, applies the rules (`conveyor.monitoring.alerts`),
stores each alert and sends it to the monitor's sinks.

**Late labels.** Evaluating a window again stores a new evaluation of it (the
newest per window is the one that counts in history) with the labels known by
then; alerts already raised for that window and rule are not raised again, and
the version's serving profile is not merged twice. `run_monitors` does this by
itself for windows closed less than ``label_delay`` ago when labels arrived
since their last evaluation; `requality` does it for one window.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from conveyor.core.loop import Alert, Evaluation, NewAlert
from conveyor.errors import ConveyorError, ValidationError
from conveyor.monitoring.alerts import Findings, apply_rules, dispatch
from conveyor.monitoring.config import MonitorConfig, parse_monitors
from conveyor.monitoring.quality import Quality, quality_of

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.core.registry import ModelVersion
    from conveyor.monitoring.results import DriftReport
    from conveyor.profiling.profile import Profile
    from conveyor.registry.registry import Registry
    from conveyor.stores.artifacts.base import ByteStore
    from conveyor.stores.artifacts.content import ContentAddressedStore
    from conveyor.stores.metadata.loop import LoopStore

__all__ = [
    "MonitorConfig",
    "MonitorResult",
    "evaluate_window",
    "parse_monitors",
    "requality",
    "run_monitors",
    "window_end_key",
]

log = logging.getLogger(__name__)

_DEGRADING = ("quality", "latency", "error_rate")
_DRIFTING = ("drift_share", "column_statistic", "prediction_drift", "skew")
_ERRORS = ("capture_unreadable", "reference_missing")
_PROFILE_CACHE: dict[tuple[str, str], Profile] = {}
_PROFILE_CACHE_SIZE = 32
_REFERENCE_CACHE: dict[tuple[str, float], Any] = {}


@dataclass(frozen=True)
class MonitorResult:
    """What one evaluation found and stored.

    Attributes:
        evaluation: the stored evaluation (with its id).
        alerts: the alerts stored for it (sink failures included).
        drift: input drift (None: empty window, too few rows or no reference).
        quality: the task metrics over the labelled rows (empty until labels arrive).
        predictions: prediction drift against the version's prediction reference.
        skew: the training profile against the version's serving profile so far.
        sink_errors: deliveries that failed (also stored as ``sink_failed`` alerts).
    """

    evaluation: Evaluation
    alerts: list[Alert]
    drift: DriftReport | None
    quality: dict[str, float | None]
    predictions: DriftReport | None = None
    skew: DriftReport | None = None
    sink_errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The evaluation's status."""
        return self.evaluation.status


def window_end_key(monitor: str) -> str:
    """The loop-store state key holding the end of the monitor's last evaluated window."""
    return f"monitor:{monitor}:window_end"


def _now() -> int:
    return int(time.time() * 1000)


# --- reading ------------------------------------------------------------------------


def _stored_profile(artifacts: ContentAddressedStore, sha256: str) -> Profile:
    """A stored profile, parsed once per process (artifacts never change)."""
    from conveyor.profiling.profile import Profile

    key = (artifacts.uri, sha256)
    found = _PROFILE_CACHE.get(key)
    if found is None:
        found = Profile.from_bytes(artifacts.get_bytes(sha256))
        if len(_PROFILE_CACHE) >= _PROFILE_CACHE_SIZE:
            _PROFILE_CACHE.pop(next(iter(_PROFILE_CACHE)))
        _PROFILE_CACHE[key] = found
    return found


def _exact_reference(path: str) -> Any:
    """A prepared `Reference` of a Parquet file, kept while the file is unchanged."""
    from pathlib import Path

    from conveyor.monitoring.drift import Reference

    source = Path(path)
    if not source.is_file():
        raise ValidationError("drift.reference", f"{path} is not a file")
    key = (str(source.resolve()), source.stat().st_mtime)
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE.clear()
        _REFERENCE_CACHE[key] = Reference(source, keep=True)
    return _REFERENCE_CACHE[key]


def _majority_version(rows: pa.Table) -> int | None:
    if not rows.num_rows or "version" not in rows.column_names:
        return None
    counts = rows.group_by("version", use_threads=False).aggregate([("version", "count")])
    counts = counts.filter(counts.column("version").is_valid())
    if not counts.num_rows:
        return None
    best = max(range(counts.num_rows), key=lambda i: counts.column("version_count")[i].as_py())
    return int(counts.column("version")[best].as_py())


def _reference_version(
    registry: Registry, monitor: MonitorConfig, served: int | None
) -> ModelVersion:
    if served is not None:
        try:
            found = registry.get_version(monitor.model, served)
        except ConveyorError:
            found = None
        if found is not None and found.profile_sha256:
            return found
    return registry.resolve(f"{monitor.model}@{monitor.alias}")


# --- serving ----------------------------------------------------------------------


def serving_stats(rows: pa.Table) -> dict[str, float | None]:
    """Latency p50/p99 (ms) and the 5xx and 4xx shares, per request."""
    import numpy as np

    if not rows.num_rows:
        return {"requests": 0, "latency_p50_ms": None, "latency_p99_ms": None, "error_rate": None}
    per = rows.group_by("request_id", use_threads=False).aggregate(
        [("latency_ms", "max"), ("status", "max")]
    )
    latency = np.asarray(per.column("latency_ms_max").to_numpy(zero_copy_only=False), float)
    latency = latency[np.isfinite(latency)]
    status = np.asarray(per.column("status_max").to_numpy(zero_copy_only=False), float)
    p50, p99 = np.quantile(latency, [0.5, 0.99]).tolist() if latency.size else (None, None)
    return {
        "requests": per.num_rows,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "error_rate": float(np.mean(status >= 500)),
        "client_error_rate": float(np.mean((status >= 400) & (status < 500))),
    }


# --- drift, predictions, skew ------------------------------------------------------------


@dataclass
class _Window:
    """What an evaluation works on and what it found so far."""

    monitor: MonitorConfig
    start: int
    end: int
    now: int
    rows: int = 0
    answered: Any = None  # pa.Table of rows answered without error
    version: ModelVersion | None = None
    reference: Profile | None = None
    drift: DriftReport | None = None
    predictions: DriftReport | None = None
    skew: DriftReport | None = None
    quality: Quality | None = None
    serving: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    registry: Registry | None = None


def _tested_columns(w: _Window, inputs: pa.Table) -> list[str]:
    assert w.reference is not None
    known = set(w.reference.columns) | set(w.reference.skipped)
    wanted = list(w.monitor.drift.columns or inputs.column_names)
    missing = [c for c in wanted if c not in inputs.column_names or c not in known]
    if missing:
        w.notes.append(f"not tested (not in both reference and capture): {', '.join(missing)}")
    return [c for c in wanted if c in inputs.column_names and c in known]


def _drift_of(w: _Window, ref: Any, cur: Any, names: list[str], mode: str) -> DriftReport:
    from conveyor.monitoring.drift import drift

    cfg = w.monitor.drift
    return drift(
        ref,
        cur,
        {k: v for k, v in cfg.methods.items() if k in names},
        mode=mode,  # type: ignore[arg-type]  # parse_monitors checked it
        thresholds=cfg.column_thresholds(names),
        columns=names,
        drift_share=cfg.share,
    )


def _input_drift(w: _Window, loop_store: LoopStore, artifacts: ContentAddressedStore) -> None:
    from conveyor.profiling.profile import profile
    from conveyor.stores.capture import inputs_of

    inputs = inputs_of(w.answered)
    names = _tested_columns(w, inputs)
    if not names:
        w.notes.append("no input column to test for drift")
        return
    current = profile(inputs.select(names))
    if w.monitor.drift.mode == "exact":
        assert w.monitor.drift.reference is not None
        reference = _exact_reference(w.monitor.drift.reference)
        w.drift = _drift_of(w, reference, inputs.select(names), names, "exact")
    else:
        w.drift = _drift_of(w, w.reference, current, names, "sketch")
    w.skew = _skew(w, current, names, loop_store, artifacts)
    _transformed_skew(w, inputs, artifacts)


_MODEL_CACHE: dict[tuple[str, str], Any] = {}


def _transformed_skew(w: _Window, inputs: pa.Table, artifacts: ContentAddressedStore) -> None:
    """Skew of what the estimator sees: serving's transformed features vs training's.

    Runs when registration stored the training rows' transformed profile (the tag
    ``transformed_profile_sha256``); the result goes in ``metrics["transformed_skew"]``.
    """
    from conveyor.lifecycle.transform import transformed_features
    from conveyor.profiling.profile import profile

    assert w.version is not None
    digest = w.version.tags.get("transformed_profile_sha256")
    if not digest or w.registry is None:
        return
    key = (artifacts.uri, w.version.ref)
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 8:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = w.registry.load_model(w.version.ref)
    loaded = _MODEL_CACHE[key]
    try:
        training = _stored_profile(artifacts, digest)
        names = [c.name for c in loaded.signature.columns if c.name in inputs.column_names]
        frame = transformed_features(loaded.model, inputs.select(names).to_pandas())
    except (ConveyorError, ValueError, TypeError, KeyError) as exc:
        w.notes.append(f"skew of the transformed features not computed: {exc}")
        return
    if frame is None:
        return
    cols = [c for c in frame.columns if c in training.columns]
    if cols:
        report = _drift_of(w, training, profile(frame[cols]), cols, "sketch")
        w.extra["transformed_skew"] = _report_dict(report)


def _load_state(loop_store: LoopStore, key: str) -> dict[str, Any]:
    text = loop_store.get_state(key)
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        value = {}
    return value if isinstance(value, dict) else {}


def _skew(
    w: _Window,
    current: Profile,
    names: list[str],
    loop_store: LoopStore,
    artifacts: ContentAddressedStore,
) -> DriftReport | None:
    """The training profile vs every window this version served so far (merged once each)."""
    assert w.version is not None
    key = f"monitor:{w.monitor.name}:serving:v{w.version.version}"
    state = _load_state(loop_store, key)
    serving: Profile | None = None
    if state.get("sha256"):
        try:
            serving = _stored_profile(artifacts, state["sha256"])
        except ConveyorError:
            w.notes.append("the stored serving profile is gone; skew restarts from this window")
            state = {}
    if int(state.get("until", -1)) <= w.start:  # a window not merged yet
        try:
            serving = current if serving is None else serving.merge(current)
        except ValidationError:
            serving = current  # the tested columns changed: start again
        digest = artifacts.put_bytes(serving.to_bytes()).sha256
        _PROFILE_CACHE[(artifacts.uri, digest)] = serving
        windows = int(state.get("windows", 0)) + 1
        loop_store.set_state(
            key, json.dumps({"sha256": digest, "until": w.end, "windows": windows})
        )
        w.extra["skew_windows"] = windows
    else:
        w.extra["skew_windows"] = int(state.get("windows", 0))
    if serving is None:
        return None
    cols = [c for c in names if c in serving.columns]
    return _drift_of(w, w.reference, serving, cols, "sketch") if cols else None


def _prediction_drift(w: _Window, loop_store: LoopStore, artifacts: ContentAddressedStore) -> None:
    from conveyor.profiling.profile import profile
    from conveyor.stores.capture import outputs_of

    assert w.version is not None
    outputs = outputs_of(w.answered)
    if not outputs.num_columns:
        return
    current = profile(outputs)
    names = list(current.columns)
    if not names:
        return
    tagged = w.version.tags.get("prediction_profile_sha256")
    key = f"monitor:{w.monitor.name}:predictions:v{w.version.version}"
    state = _load_state(loop_store, key)
    digest = tagged or state.get("sha256")
    if not digest:
        digest = artifacts.put_bytes(current.to_bytes()).sha256
        baseline = {"sha256": digest, "window_start": w.start, "window_end": w.end}
        loop_store.set_state(key, json.dumps(baseline))
        w.extra["prediction_reference"] = baseline
        w.notes.append("this window's outputs are the version's prediction baseline")
        return
    w.extra["prediction_reference"] = {"sha256": digest, "tag": bool(tagged), **state}
    if state.get("window_start") == w.start and not tagged:
        return  # the baseline itself
    from conveyor.monitoring.drift import drift

    reference = _stored_profile(artifacts, digest)
    cols = [c for c in names if c in reference.columns]
    if cols:
        w.predictions = drift(reference, current, mode="sketch", columns=cols)


# --- the evaluation --------------------------------------------------------------------


def _read(w: _Window, byte_store: ByteStore) -> pa.Table | None:
    from conveyor.stores.capture import read_capture

    try:
        return read_capture(byte_store, w.monitor.model, w.start, w.end, route=w.monitor.route)
    except Exception as exc:  # any unreadable file must become an alert, never a skip
        w.errors["capture_unreadable"] = (
            f"cannot read the capture of {w.monitor.model!r} for this window: "
            f"{type(exc).__name__}: {exc}"
        )
        return None


def _labels(w: _Window, byte_store: ByteStore) -> None:
    from conveyor.stores.capture import join_feedback, read_feedback

    m = w.monitor
    try:
        feedback = read_feedback(byte_store, m.model, w.start, w.now + 1)
    except Exception as exc:  # as with capture: alert, never skip
        w.errors["capture_unreadable"] = f"cannot read the feedback of {m.model!r}: {exc}"
        return
    joined = join_feedback(w.answered, feedback)
    w.quality = quality_of(
        joined,
        task=m.task,
        prediction=m.prediction,
        score=m.score,
        positive=m.positive,
        slices=m.slices,
    )


def _reference(w: _Window, registry: Registry, artifacts: ContentAddressedStore) -> None:
    try:
        w.version = _reference_version(registry, w.monitor, _majority_version(w.answered))
    except ConveyorError as exc:
        w.errors["reference_missing"] = f"no version to compare with: {exc}"
        return
    if not w.version.profile_sha256:
        w.errors["reference_missing"] = (
            f"{w.version.ref} has no reference profile (register it with profile=...)"
        )
        return
    try:
        w.reference = _stored_profile(artifacts, w.version.profile_sha256)
    except ConveyorError as exc:
        w.errors["reference_missing"] = f"the reference profile of {w.version.ref}: {exc}"


def _examine(
    w: _Window,
    table: pa.Table,
    *,
    loop_store: LoopStore,
    byte_store: ByteStore,
    artifacts: ContentAddressedStore,
    registry: Registry,
) -> None:
    import pyarrow.compute as pc

    w.rows = table.num_rows
    w.serving = serving_stats(table)
    w.answered = table.filter(pc.less(table.column("status"), 400))
    _labels(w, byte_store)
    _reference(w, registry, artifacts)
    enough = w.answered.num_rows >= w.monitor.min_rows
    if not enough:
        w.notes.append(
            f"{w.answered.num_rows} answered rows, fewer than min_rows "
            f"({w.monitor.min_rows}): no drift verdict"
        )
    if w.reference is None or not enough or not w.monitor.drift.enabled:
        return
    try:
        _input_drift(w, loop_store, artifacts)
        _prediction_drift(w, loop_store, artifacts)
    except ConveyorError as exc:
        w.notes.append(f"drift not computed: {exc}")


def _status(w: _Window, alerts: list[NewAlert]) -> str:
    rules = {a.rule for a in alerts}
    if "capture_unreadable" in rules or (w.rows and rules & set(_ERRORS)):
        return "error"
    if not w.rows:
        return "empty"
    if rules & set(_DEGRADING):
        return "degraded"
    return "drift" if rules & set(_DRIFTING) else "ok"


def _report_dict(report: DriftReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "share": report.share_drifted,
        "drifted": report.drifted,
        "drifted_columns": report.drifted_columns,
        "tested": len(report.tested_columns),
        "mode": report.mode,
        "columns": {
            name: {
                "method": r.method,
                "statistic": r.statistic,
                "p_value": r.p_value,
                "threshold": r.threshold,
                "drifted": r.drifted,
            }
            for name, r in report.columns.items()
        },
    }


def _metrics(w: _Window, alerts: list[NewAlert]) -> dict[str, Any]:
    q = w.quality or Quality(w.rows, 0)
    metrics: dict[str, Any] = _finite(
        {
            "rows": w.rows,
            "answered_rows": 0 if w.answered is None else w.answered.num_rows,
            "version": None if w.version is None else w.version.version,
            "quality": dict(q.metrics),
            "quality_slices": q.slices,
            "labelled_rows": q.labelled,
            "coverage": q.coverage,
            "label_delay_ms": q.delay_ms,
            "labels_until": w.now,
            **w.serving,
            "drift": _report_dict(w.drift),
            "prediction_drift": _report_dict(w.predictions),
            "skew": _report_dict(w.skew),
            **w.extra,
            "errors": dict(w.errors),
            "notes": list(w.notes),
            "alerts": sorted({a.rule for a in alerts}),
        }
    )
    return metrics


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and ±inf become None (the store keeps strict JSON)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _already_raised(
    loop_store: LoopStore, monitor: str, start: int, end: int
) -> set[tuple[str, str]]:
    seen = set()
    for alert in loop_store.list_alerts(source=monitor, limit=100_000):
        p = alert.payload
        if p.get("window_start") == start and p.get("window_end") == end:
            seen.add((alert.rule, _alert_key(alert.payload)))
    return seen


def _alert_key(payload: dict[str, Any]) -> str:
    return str(payload.get("metric") or payload.get("column") or payload.get("stat") or "")


def evaluate_window(
    monitor: MonitorConfig,
    *,
    loop_store: LoopStore,
    byte_store: ByteStore,
    artifacts: ContentAddressedStore,
    registry: Registry,
    start_ms: int,
    end_ms: int,
    now_ms: int | None = None,
    report: bool = True,
) -> MonitorResult:
    """Evaluate the monitor on the captured rows with ``start_ms <= timestamp < end_ms``.

    Args:
        monitor: the monitor (from `parse_monitors`).
        loop_store: where the evaluation, its alerts and the monitor's state are stored.
        byte_store: the artifact store's byte store (capture and feedback files).
        artifacts: the content-addressed store (reference profiles, reports).
        registry: resolves the versions and their reference profiles.
        start_ms: the window's start, epoch milliseconds (inclusive).
        end_ms: the window's end (exclusive).
        now_ms: labels that arrived after this are not counted yet (default: all).
        report: render and store the HTML report (``report_sha256``).

    Returns:
        The stored evaluation, its alerts, the drift reports and the quality metrics.
        ``evaluation.metrics`` holds ``rows``, ``version``, ``quality`` (metrics),
        ``quality_slices``, ``labelled_rows``, ``coverage``, ``label_delay_ms``
        (p50/p95/max), ``requests``, ``latency_p50_ms``, ``latency_p99_ms``,
        ``error_rate``, ``drift``/``prediction_drift``/``skew`` (share, drifted
        columns, per-column statistics), ``errors``, ``notes`` and ``alerts``.

    Raises:
        ValidationError: the window is empty or inverted.
    """
    if end_ms <= start_ms:
        raise ValidationError("end_ms", f"must be after start_ms ({start_ms}), got {end_ms}")
    now = _now() if now_ms is None else int(now_ms)
    w = _Window(monitor, int(start_ms), int(end_ms), now, registry=registry)
    table = _read(w, byte_store)
    if table is not None and table.num_rows:
        _examine(
            w,
            table,
            loop_store=loop_store,
            byte_store=byte_store,
            artifacts=artifacts,
            registry=registry,
        )
    found = Findings(
        monitor=monitor.name,
        model=monitor.model,
        window_start=w.start,
        window_end=w.end,
        version=None if w.version is None else w.version.version,
        rows=w.rows,
        drift=w.drift,
        predictions=w.predictions,
        skew=w.skew,
        quality=(w.quality.metrics if w.quality else {}),
        labelled=(w.quality.labelled if w.quality else 0),
        serving=w.serving,
        errors=w.errors,
    )
    raised = apply_rules(monitor, found)
    evaluation = Evaluation(
        monitor=monitor.name,
        model=monitor.model,
        window_start=w.start,
        window_end=w.end,
        status=_status(w, raised),
        drift_share=None if w.drift is None else w.drift.share_drifted,
        metrics=_metrics(w, raised),
    )
    if report and w.rows:
        evaluation = replace(
            evaluation, report_sha256=_store_report(w, evaluation, raised, loop_store, artifacts)
        )
    return _store(w, evaluation, raised, loop_store)


def _store_report(
    w: _Window,
    evaluation: Evaluation,
    raised: list[NewAlert],
    loop_store: LoopStore,
    artifacts: ContentAddressedStore,
) -> str:
    from conveyor.monitoring.pages import render_evaluation

    history = [e for e in loop_store.list_evaluations(w.monitor.name) if e.window_start != w.start]
    page = render_evaluation(
        evaluation,
        drift=w.drift,
        predictions=w.predictions,
        skew=w.skew,
        history=[*history, evaluation],
        alerts=raised,
    )
    return artifacts.put_bytes(page.encode("utf-8")).sha256


def _store(
    w: _Window, evaluation: Evaluation, raised: list[NewAlert], loop_store: LoopStore
) -> MonitorResult:
    previous = [
        e
        for e in loop_store.list_evaluations(w.monitor.name, limit=100_000)
        if e.window_start == w.start and e.window_end == w.end
    ]
    stored = loop_store.add_evaluation(evaluation)
    if previous:  # a re-evaluation: raise only what was not raised for this window yet
        seen = _already_raised(loop_store, w.monitor.name, w.start, w.end)
        raised = [a for a in raised if (a.rule, _alert_key(a.payload)) not in seen]
    raised = [replace(a, evaluation_id=stored.id) for a in raised]
    alerts, failures = dispatch(raised, w.monitor.sinks, loop_store)
    return MonitorResult(
        evaluation=stored,
        alerts=alerts,
        drift=w.drift,
        quality=dict(w.quality.metrics) if w.quality else {},
        predictions=w.predictions,
        skew=w.skew,
        sink_errors=failures,
    )


# --- running monitors ----------------------------------------------------------------------


def _first_window(monitor: MonitorConfig, byte_store: ByteStore, now: int) -> int:
    """Where a monitor never evaluated starts: the window of its oldest capture file."""
    from conveyor.stores.capture import capture_keys

    size = monitor.window_ms
    try:
        keys = capture_keys(byte_store, monitor.model, end_ms=now)
    except Exception:  # unreadable listing: start at the last closed window, which alerts
        keys = []
    if keys:
        first = int(keys[0].rsplit("/", 1)[-1][:13])
        return first - first % size
    return (now - now % size) - size


def requality(
    monitor: MonitorConfig,
    evaluation: Evaluation,
    *,
    loop_store: LoopStore,
    byte_store: ByteStore,
    artifacts: ContentAddressedStore,
    registry: Registry,
    now_ms: int | None = None,
) -> MonitorResult:
    """Evaluate ``evaluation``'s window again with the labels that arrived since."""
    return evaluate_window(
        monitor,
        loop_store=loop_store,
        byte_store=byte_store,
        artifacts=artifacts,
        registry=registry,
        start_ms=evaluation.window_start,
        end_ms=evaluation.window_end,
        now_ms=now_ms,
    )


def _awaiting_labels(
    monitor: MonitorConfig, loop_store: LoopStore, byte_store: ByteStore, now: int, done: set[int]
) -> list[Evaluation]:
    """Windows closed less than ``label_delay`` ago, not fully labelled, that got new labels."""
    if monitor.label_delay_ms <= 0:
        return []
    newest: dict[int, Evaluation] = {}
    for e in loop_store.list_evaluations(monitor.name):
        if e.window_end > now - monitor.label_delay_ms and e.window_start not in done:
            newest[e.window_start] = e
    candidates = [
        e
        for e in newest.values()
        if e.status not in ("empty", "error") and (e.metrics.get("coverage") or 0.0) < 1.0
    ]
    if not candidates:
        return []
    return [e for e in candidates if _has_new_labels(monitor, e, byte_store, now)]


def _has_new_labels(monitor: MonitorConfig, e: Evaluation, byte_store: ByteStore, now: int) -> bool:
    """Whether labels for the window's requests arrived after its last evaluation."""
    import pyarrow.compute as pc

    from conveyor.stores.capture import capture_keys, read_capture, read_feedback

    since = int(e.metrics.get("labels_until", e.window_start)) + 1
    if not capture_keys(byte_store, monitor.model, since, now + 1, kind="feedback"):
        return False
    try:
        fresh = read_feedback(byte_store, monitor.model, since, now + 1)
        rows = read_capture(byte_store, monitor.model, e.window_start, e.window_end, monitor.route)
    except Exception:  # evaluating the window again raises the unreadable-capture alert
        return True
    found = pc.is_in(rows.column("request_id"), value_set=fresh.column("request_id"))
    return bool(pc.any(found).as_py())


def run_monitors(
    monitors: list[MonitorConfig],
    *,
    loop_store: LoopStore,
    byte_store: ByteStore,
    artifacts: ContentAddressedStore,
    registry: Registry,
    now_ms: int | None = None,
    max_windows: int = 1000,
) -> list[MonitorResult]:
    """Evaluate every window that closed since each monitor's last evaluated one.

    A monitor that never ran starts at the window of its oldest capture file (or the
    last closed window when there is none). Windows align to the epoch (a 1h window
    runs from the hour). Afterwards, windows closed less than ``label_delay`` ago
    whose labels have come in since are evaluated again (see `requality`).

    Args:
        monitors: the monitors to run.
        loop_store: evaluations, alerts and state (``monitor:<name>:window_end``).
        byte_store: the artifact store's byte store.
        artifacts: the content-addressed store.
        registry: the model registry.
        now_ms: the present, epoch milliseconds (default: the clock).
        max_windows: evaluate at most this many new windows per monitor in one run.

    Returns:
        One result per evaluated window, by monitor and then by time.
    """
    now = _now() if now_ms is None else int(now_ms)
    results: list[MonitorResult] = []
    for monitor in monitors:
        key = window_end_key(monitor.name)
        saved = loop_store.get_state(key)
        start = int(saved) if saved else _first_window(monitor, byte_store, now)
        done: set[int] = set()
        while start + monitor.window_ms <= now and len(done) < max_windows:
            end = start + monitor.window_ms
            result = evaluate_window(
                monitor,
                loop_store=loop_store,
                byte_store=byte_store,
                artifacts=artifacts,
                registry=registry,
                start_ms=start,
                end_ms=end,
                now_ms=now,
            )
            results.append(result)
            loop_store.set_state(key, str(end))
            done.add(start)
            start = end
        for old in _awaiting_labels(monitor, loop_store, byte_store, now, done):
            result = requality(
                monitor,
                old,
                loop_store=loop_store,
                byte_store=byte_store,
                artifacts=artifacts,
                registry=registry,
                now_ms=now,
            )
            results.append(result)
    return results
