"""Monitors on real stores: windows of generated capture with known drift, and late labels."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, roc_auc_score

from conveyor.errors import ConfigError, ValidationError
from conveyor.monitoring import profile
from conveyor.monitoring.monitors import (
    evaluate_window,
    parse_monitors,
    requality,
    run_monitors,
    window_end_key,
)
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_loop_store, open_model_store
from conveyor.stores.capture import write_capture, write_feedback

H = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % H  # on the hour
MODEL = "flights"


def features(rows: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """x0 and x1 move with ``shift``; x2 and city never do."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x0": rng.normal(shift, 1.0, rows),
            "x1": rng.normal(2 * shift, 1.0, rows),
            "x2": rng.normal(0.0, 1.0, rows),
            "city": rng.choice(["oslo", "rome", "lima"], rows),
        }
    )


def truth(frame: pd.DataFrame, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (frame["x0"].to_numpy() + rng.normal(0, 0.7, len(frame)) > 0).astype(np.int64)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """``flights`` version 1 at ``production``, with the reference profile of 5000 rows."""
    root = tmp_path_factory.mktemp("registry")
    artifacts = open_artifact_store(str(root / "artifacts"))
    reg = Registry(open_model_store(f"sqlite:///{root / 'conveyor.db'}"), artifacts)
    reference = features(5000, seed=42)
    reference["late"] = truth(reference)
    digest = artifacts.put_bytes(profile(reference).to_bytes()).sha256
    x = reference[["x0"]]
    model = DummyClassifier().fit(x, reference["late"])
    version = reg.register_model(MODEL, model, x.head(2), profile_sha256=digest)
    reg.set_alias(MODEL, "production", version.version, reason="test", actor="test")
    bare = reg.register_model("bare", model, x.head(2))  # no reference profile
    reg.set_alias("bare", "production", bare.version, reason="test", actor="test")
    return reg


@dataclass
class Env:
    registry: Registry
    root: Path

    def __post_init__(self) -> None:
        self.loop = open_loop_store(f"sqlite:///{self.root / 'loop.db'}")
        self.capture = open_artifact_store(str(self.root / "capture")).byte_store
        self.artifacts = self.registry.artifacts

    @property
    def stores(self) -> dict[str, Any]:
        return {
            "loop_store": self.loop,
            "byte_store": self.capture,
            "artifacts": self.artifacts,
            "registry": self.registry,
        }

    def serve(
        self,
        start: int,
        rows: int,
        *,
        shift: float = 0.0,
        seed: int = 0,
        model: str = MODEL,
        good: bool = True,
        latency: float = 5.0,
        errors: float = 0.0,
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Capture ``rows`` answered requests in the hour from ``start``: ids, labels, scores."""
        frame = features(rows, shift=shift, seed=seed)
        labels = truth(frame, seed=seed + 1)
        rng = np.random.default_rng(seed + 2)
        score = 1 / (1 + np.exp(-2 * frame["x0"].to_numpy())) if good else rng.random(rows)
        ids = [f"{start}-{seed}-{i}" for i in range(rows)]
        status = np.where(rng.random(rows) < errors, 500, 200)
        table = pa.table(
            {
                "request_id": ids,
                "row": pa.array(np.zeros(rows, np.int32)),
                "timestamp": pa.array(start + np.sort(rng.integers(0, H, rows)), pa.int64()),
                "model": [model] * rows,
                "version": pa.array(np.ones(rows, np.int64)),
                "route": ["primary"] * rows,
                "latency_ms": rng.gamma(4.0, latency / 4.0, rows),
                "status": pa.array(status.astype(np.int16)),
                **{f"in.{c}": frame[c].to_numpy() for c in frame.columns},
                "out.prediction": (score > 0.5).astype(np.int64),
                "out.probability": score,
            }
        )
        write_capture(self.capture, model, table)
        return ids, labels, score

    def evaluate(self, monitor: Any, start: int, **kw: Any) -> Any:
        return evaluate_window(monitor, start_ms=start, end_ms=start + H, **self.stores, **kw)


@pytest.fixture
def env(registry: Registry, tmp_path: Path) -> Env:
    return Env(registry, tmp_path)


def monitor(**overrides: Any) -> Any:
    spec: dict[str, Any] = {
        "name": "flights-production",
        "model": MODEL,
        "window": "1h",
        "drift": {"share": 0.3},
        "quality": {"roc_auc": {"min": 0.7}, "accuracy": {"min": 0.6}},
        "min_rows": 100,
        "sinks": [],
        **overrides,
    }
    return parse_monitors([spec])[0]


# --- parsing -----------------------------------------------------------------------------


def test_the_issue_example_parses():
    (m,) = parse_monitors(
        [
            {
                "name": "flights-production",
                "model": "flights",
                "alias": "production",
                "window": "1h",
                "label": "arr_delayed",
                "task": "classification",
                "drift": {"share": 0.3, "methods": {"distance": "psi"}, "threshold": None},
                "quality": {"roc_auc": {"min": 0.65}, "accuracy": {"min": 0.7}},
                "serving": {"p99_ms": 50, "error_rate": 0.01},
                "min_rows": 100,
                "sinks": [
                    "log",
                    {
                        "webhook": {
                            "url": "http://127.0.0.1:9000/hook",
                            "allow_hosts": ["127.0.0.1"],
                        }
                    },
                    {"retrain": {"pipeline": "training"}},
                ],
            }
        ]
    )
    assert (m.window_ms, m.drift.share, dict(m.drift.methods)) == (H, 0.3, {"distance": "psi"})
    assert m.quality["roc_auc"].min == 0.65
    assert (m.serving.p99_ms, m.serving.error_rate) == (50.0, 0.01)
    assert [s.kind for s in m.sinks] == ["log", "webhook", "retrain"]
    assert parse_monitors(None) == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"name": "m"}, "monitors: must be a list"),
        (["m"], "monitors[0]: must be a mapping"),
        ([{"model": "flights"}], "monitors[0].name: is required"),
        ([{"name": "m"}], "monitors[0] (m).model: is required"),
        ([{"name": "m", "model": "f", "windw": "1h"}], "monitors[0] (m).windw: unknown key"),
        ([{"name": "m", "model": "f", "window": "1 hour"}], "monitors[0] (m).window: must be a"),
        ([{"name": "m", "model": "f", "window": "0h"}], "(m).window: must be a duration"),
        ([{"name": "m", "model": "f", "task": "ranking"}], "(m).task: must be classification"),
        ([{"name": "m", "model": "f", "drift": {"share": 1.5}}], "(m).drift.share: must be"),
        (
            [{"name": "m", "model": "f", "drift": {"methods": {"a": "t"}}}],
            "drift.methods.a: unknown",
        ),
        ([{"name": "m", "model": "f", "drift": {"mode": "exact"}}], "drift.reference: exact mode"),
        ([{"name": "m", "model": "f", "quality": {"rmse": {"max": 1}}}], "quality.rmse: not a"),
        ([{"name": "m", "model": "f", "quality": {"f1": {"min": "x"}}}], "quality.f1.min: must be"),
        ([{"name": "m", "model": "f", "quality": {"f1": {}}}], "quality.f1: needs min"),
        ([{"name": "m", "model": "f", "serving": {"error_rate": 2}}], "serving.error_rate: must"),
        ([{"name": "m", "model": "f", "min_rows": 0}], "(m).min_rows: must be a whole number"),
        ([{"name": "m", "model": "f", "sinks": ["pager"]}], "(m).sinks[0]: unknown sink"),
        ([{"name": "m", "model": "f", "label_delay": 5}], "(m).label_delay: must be a duration"),
        ([{"name": "m", "model": "bad name"}], "(m).model: must be 1-128 letters"),
        ([{"name": "m", "model": "f"}, {"name": "m", "model": "g"}], "monitors[1].name: 'm' is"),
    ],
)
def test_bad_monitor_config_names_the_key(section, message):
    with pytest.raises(ConfigError, match=None) as err:
        parse_monitors(section)
    assert message in str(err.value)


# --- one window --------------------------------------------------------------------------


def test_a_drifted_window_is_found_stored_and_alerted(env):
    env.serve(T0, 3000, shift=1.0)
    result = env.evaluate(monitor(), T0)
    assert result.drift is not None
    assert set(result.drift.drifted_columns) == {"x0", "x1"}
    assert result.status == "drift"
    stored = env.loop.list_evaluations("flights-production")
    assert [e.id for e in stored] == [result.evaluation.id]
    assert stored[0].drift_share == pytest.approx(0.5)  # 2 of x0, x1, x2, city
    assert stored[0].metrics["rows"] == 3000
    alerts = env.loop.list_alerts(source="flights-production")
    assert [a.rule for a in alerts] == ["drift_share"]
    assert alerts[0].evaluation_id == result.evaluation.id
    assert alerts[0].payload["columns"] == ["x0", "x1"]
    page = env.artifacts.get_bytes(result.evaluation.report_sha256).decode()
    assert 'data-column="x0"' in page
    assert 'data-column="x2"' not in page
    assert "<svg" in page
    assert "drift share of input columns" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_a_steady_window_is_ok(env):
    env.serve(T0, 3000, seed=3)
    result = env.evaluate(monitor(), T0)
    assert result.status == "ok"
    assert result.drift is not None
    assert result.drift.drifted_columns == []
    assert result.alerts == []


def test_an_empty_window_is_an_empty_evaluation(env):
    result = env.evaluate(monitor(), T0)
    assert result.status == "empty"
    assert result.evaluation.metrics["rows"] == 0
    assert result.drift is None
    assert result.quality == {}
    assert result.alerts == []
    assert env.loop.list_evaluations("flights-production")[0].status == "empty"


def test_too_few_rows_give_no_drift_verdict(env):
    env.serve(T0, 50, shift=2.0)
    result = env.evaluate(monitor(), T0)
    assert result.drift is None
    assert result.status == "ok"
    assert any("fewer than min_rows" in n for n in result.evaluation.metrics["notes"])


def test_an_unreadable_capture_file_is_an_alert(env):
    env.capture.put_bytes(
        f"capture/{MODEL}/{T0 + 5:013d}-{T0 + 9:013d}-0123456789ab.parquet", b"no"
    )
    result = env.evaluate(monitor(), T0)
    assert result.status == "error"
    (alert,) = result.alerts
    assert (alert.rule, alert.severity) == ("capture_unreadable", "critical")
    assert "cannot read the capture" in alert.message


def test_a_version_without_reference_profile_is_an_alert(env):
    env.serve(T0, 500, model="bare")
    result = env.evaluate(monitor(model="bare", quality={}), T0)
    assert result.status == "error"
    assert [a.rule for a in result.alerts] == ["reference_missing"]
    assert "has no reference profile" in result.alerts[0].message


def test_an_unknown_model_is_an_alert_not_a_crash(env):
    env.serve(T0, 500, model="ghost")
    result = env.evaluate(monitor(model="ghost"), T0)
    assert [a.rule for a in result.alerts] == ["reference_missing"]


def test_an_inverted_window_is_refused(env):
    with pytest.raises(ValidationError, match="end_ms"):
        evaluate_window(monitor(), start_ms=T0, end_ms=T0, **env.stores)


# --- quality and late labels --------------------------------------------------------------


def test_quality_matches_sklearn_and_late_labels_update_it(env):
    ids, labels, score = env.serve(T0, 2000, seed=5)
    m = monitor()
    first = env.evaluate(m, T0, now_ms=T0 + H + 1)
    assert first.quality == {}
    assert first.evaluation.metrics["coverage"] == 0.0
    write_feedback(env.capture, MODEL, ids, labels.tolist(), timestamp_ms=T0 + 2 * H)
    # Labels that arrived after `now` are not counted yet.
    assert env.evaluate(m, T0, now_ms=T0 + H + 2).evaluation.metrics["coverage"] == 0.0
    again = requality(m, first.evaluation, now_ms=T0 + 3 * H, **env.stores)
    assert again.quality["roc_auc"] == pytest.approx(roc_auc_score(labels, score), abs=1e-12)
    predicted = (score > 0.5).astype(int)
    assert again.quality["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    metrics = again.evaluation.metrics
    assert metrics["coverage"] == 1.0
    assert metrics["labelled_rows"] == 2000
    assert metrics["label_delay_ms"]["max"] <= 2 * H
    assert metrics["label_delay_ms"]["p50"] > H


def test_bad_quality_is_degraded_once_per_window(env):
    ids, labels, _ = env.serve(T0, 1000, seed=7, good=False)
    write_feedback(env.capture, MODEL, ids, labels.tolist(), timestamp_ms=T0 + H)
    m = monitor()
    result = env.evaluate(m, T0)
    assert result.status == "degraded"
    rules = sorted((a.rule, a.payload["metric"]) for a in result.alerts)
    assert rules == [("quality", "accuracy"), ("quality", "roc_auc")]
    assert env.evaluate(m, T0).alerts == []  # evaluated again: not raised twice
    assert len(env.loop.list_alerts(source=m.name)) == 2


def test_partial_labels_report_coverage_and_too_few_labels_raise_nothing(env):
    ids, labels, _ = env.serve(T0, 1000, seed=8, good=False)
    write_feedback(env.capture, MODEL, ids[:50], labels[:50].tolist(), timestamp_ms=T0 + H)
    result = env.evaluate(monitor(), T0)
    assert result.evaluation.metrics["coverage"] == pytest.approx(0.05)
    assert "accuracy" in result.quality
    assert [a for a in result.alerts if a.rule == "quality"] == []  # 50 < min_rows


def test_slices_report_quality_per_value(env):
    ids, labels, _ = env.serve(T0, 900, seed=9)
    write_feedback(env.capture, MODEL, ids, labels.tolist(), timestamp_ms=T0 + H)
    result = env.evaluate(monitor(slices=["city"]), T0)
    by_city = result.evaluation.metrics["quality_slices"]["city"]
    assert set(by_city) == {"oslo", "rome", "lima"}
    assert sum(s["rows"] for s in by_city.values()) == 900


def test_regression_quality(env):
    frame = features(400, seed=11)
    ids = [f"r{i}" for i in range(400)]
    rng = np.random.default_rng(0)
    pred = frame["x0"].to_numpy()
    table = pa.table(
        {
            "request_id": ids,
            "row": pa.array(np.zeros(400, np.int32)),
            "timestamp": pa.array(np.full(400, T0 + 10), pa.int64()),
            "model": [MODEL] * 400,
            "version": pa.array(np.ones(400, np.int64)),
            "route": ["primary"] * 400,
            "latency_ms": np.full(400, 3.0),
            "status": pa.array(np.full(400, 200, np.int16)),
            "in.x0": frame["x0"].to_numpy(),
            "out.prediction": pred,
        }
    )
    write_capture(env.capture, MODEL, table)
    label = pred + rng.normal(0, 0.5, 400)
    write_feedback(env.capture, MODEL, ids, label.tolist(), timestamp_ms=T0 + H)
    m = monitor(task="regression", quality={"rmse": {"max": 0.1}})
    result = env.evaluate(m, T0)
    assert result.quality["mae"] == pytest.approx(np.mean(np.abs(pred - label)))
    assert result.quality["rmse"] == pytest.approx(np.sqrt(np.mean((pred - label) ** 2)))
    assert [a.payload["metric"] for a in result.alerts] == ["rmse"]


# --- serving, predictions, skew ------------------------------------------------------------


def test_slow_and_failing_serving_is_degraded(env):
    env.serve(T0, 2000, seed=12, latency=80.0, errors=0.05)
    m = monitor(serving={"p99_ms": 50, "error_rate": 0.01}, quality={})
    result = env.evaluate(m, T0)
    metrics = result.evaluation.metrics
    assert metrics["latency_p99_ms"] > 50
    assert 0.03 < metrics["error_rate"] < 0.07
    assert sorted(a.rule for a in result.alerts) == ["error_rate", "latency"]
    assert result.status == "degraded"
    assert metrics["answered_rows"] < 2000  # the failed rows are left out of drift


def test_prediction_drift_against_the_first_window(env):
    m = monitor(drift={"share": 0.9, "predictions": True}, quality={})
    env.serve(T0, 2000, seed=13)
    env.serve(T0 + H, 2000, seed=14)
    env.serve(T0 + 2 * H, 2000, seed=15, shift=1.5)
    base = env.evaluate(m, T0)
    assert base.predictions is None
    assert base.evaluation.metrics["prediction_reference"]["window_start"] == T0
    assert env.evaluate(m, T0 + H).predictions.drifted_columns == []
    shifted = env.evaluate(m, T0 + 2 * H)
    assert "probability" in shifted.predictions.drifted_columns
    assert "prediction_drift" in [a.rule for a in shifted.alerts]


def test_skew_merges_each_window_once(env):
    m = monitor(drift={"share": 0.9, "skew_share": 0.25}, quality={})
    env.serve(T0, 1000, seed=16, shift=1.0)
    env.serve(T0 + H, 1000, seed=17, shift=1.0)
    first = env.evaluate(m, T0)
    assert first.evaluation.metrics["skew_windows"] == 1
    assert set(first.skew.drifted_columns) == {"x0", "x1"}
    assert "skew" in [a.rule for a in first.alerts]
    assert env.evaluate(m, T0 + H).evaluation.metrics["skew_windows"] == 2
    assert env.evaluate(m, T0).evaluation.metrics["skew_windows"] == 2  # not merged again


# --- running monitors ------------------------------------------------------------------------


def test_run_monitors_evaluates_each_closed_window_once(env):
    m = monitor(drift={"share": 0.3})
    env.serve(T0 + 5, 500, seed=18)
    env.serve(T0 + 2 * H, 500, seed=19, shift=1.0)
    results = run_monitors([m], now_ms=T0 + 3 * H + 10, **env.stores)
    assert [(r.evaluation.window_start, r.status) for r in results] == [
        (T0, "ok"),
        (T0 + H, "empty"),
        (T0 + 2 * H, "drift"),
    ]
    assert env.loop.get_state(window_end_key(m.name)) == str(T0 + 3 * H)
    assert run_monitors([m], now_ms=T0 + 3 * H + 20, **env.stores) == []
    later = run_monitors([m], now_ms=T0 + 4 * H, **env.stores)
    assert [r.evaluation.window_start for r in later] == [T0 + 3 * H]


def test_run_monitors_with_no_capture_evaluates_the_last_window(env):
    (only,) = run_monitors([monitor()], now_ms=T0 + 30 * 60_000, **env.stores)
    assert (only.evaluation.window_start, only.status) == (T0 - H, "empty")


def test_run_monitors_requalifies_windows_whose_labels_arrive_late(env):
    m = monitor(label_delay="1d")
    ids, labels, _ = env.serve(T0, 800, seed=20)
    (first,) = run_monitors([m], now_ms=T0 + H + 1, **env.stores)
    assert first.evaluation.metrics["coverage"] == 0.0
    assert run_monitors([m], now_ms=T0 + H + 2, **env.stores) == []  # nothing new
    write_feedback(env.capture, MODEL, ids, labels.tolist(), timestamp_ms=T0 + H + 100)
    (again,) = run_monitors([m], now_ms=T0 + H + 200, **env.stores)
    assert (again.evaluation.window_start, again.evaluation.metrics["coverage"]) == (T0, 1.0)
    assert again.quality["roc_auc"] > 0.8
    assert run_monitors([m], now_ms=T0 + H + 300, **env.stores) == []


def test_a_window_of_30k_rows_takes_well_under_a_second(env):
    env.serve(T0, 30_000, seed=21, shift=0.3)
    m = monitor()
    env.evaluate(m, T0)  # the first pass parses and caches the reference profile
    started = time.perf_counter()
    env.evaluate(m, T0)
    assert time.perf_counter() - started < 1.0


def test_skew_of_the_transformed_features_when_registration_stored_them(env, tmp_path):
    from conveyor.lifecycle import (
        make_feature_transform,
        make_model_pipeline,
        register_version,
        transformed_features,
    )

    reference = features(3000, seed=7)
    reference["late"] = truth(reference)
    x = reference[["x0", "x1"]]
    from lightgbm import LGBMClassifier

    # Registered as the "pipeline" format: loaded back as transform + native LightGBM.
    model = make_model_pipeline(
        make_feature_transform(["x0", "x1"], []), LGBMClassifier(n_estimators=5, verbose=-1)
    )
    model.fit(x, reference["late"])
    trained = transformed_features(model, x)
    assert trained is not None
    version = register_version(
        env.registry,
        "scaled",
        model,
        x.head(3),
        profile=profile(reference).to_bytes(),
        transformed_profile=profile(trained).to_bytes(),
        force=True,
        reason="test",
    )
    env.registry.set_alias("scaled", "production", version.version, reason="t", actor="t")
    start = 40 * H
    env.serve(start, 2000, shift=2.0, seed=3, model="scaled")  # serving data far off
    result = env.evaluate(monitor(model="scaled"), start)
    skew = result.evaluation.metrics["transformed_skew"]
    assert skew is not None
    assert skew["share"] > 0
    with pytest.raises(ValidationError, match="transformed_profile"):
        register_version(
            env.registry,
            "scaled",
            model,
            x.head(3),
            transformed_profile="nope",
            force=True,
            reason="t",
        )
