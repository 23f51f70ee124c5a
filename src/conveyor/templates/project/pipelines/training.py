"""The flights training pipeline: extract, analyze, prepare, tune, evaluate, validate, register.

Predicts whether a flight arrives more than 15 minutes late from what is known
before departure (carrier, route, scheduled hour, weekday, distance, the
plane's age and the weather at the origin), never from ``dep_delay``, which
leaks the answer. Run it with ``conveyor run pipelines/training.py:training``.
"""

from __future__ import annotations

from typing import Any

import conveyor
from conveyor import lifecycle as lc
from conveyor import pipeline, step
from conveyor.fluent import get_registry

MODEL = "flights"
TARGET = "late"
FEATURES = [
    "carrier",
    "origin",
    "dest",
    "sched_hour",
    "weekday",
    "month",
    "distance",
    "plane_age",
    "temp",
    "wind_speed",
    "precip",
    "visib",
    "humid",
    "pressure",
]
SLICES: dict[str, Any] = {"carrier": None, "origin": None}
SEARCH = {
    "model__n_estimators": ("int", 80, 300),
    "model__num_leaves": ("int", 15, 63),
    "model__learning_rate": ("float", 0.03, 0.2, "log"),
    "model__min_child_samples": ("int", 20, 200),
}


@step
def tune_model(prepared: lc.Prepared, n_trials: int = 8, seed: int = 0) -> lc.Tuned:
    """Search LightGBM's hyperparameters by 3-fold ROC AUC; refit the best on all rows."""
    from lightgbm import LGBMClassifier

    estimator = lc.make_model_pipeline(
        prepared.transform, LGBMClassifier(verbose=-1, n_jobs=2, random_state=seed)
    )
    return lc.tune(
        SEARCH,
        prepared.X_train,
        prepared.y_train,
        estimator=estimator,
        metric="roc_auc",
        n_trials=n_trials,
        cv=3,
        seed=seed,
        allow_missing=True,  # the prepared transform imputes the missing weather and plane ages
    )


@step
def evaluate_model(tuned: lc.Tuned, prepared: lc.Prepared) -> lc.Evaluation:
    """Score the tuned model on the held-out (later) flights, overall and by carrier and origin."""
    return lc.evaluate(tuned.best_model, prepared.X_test, prepared.y_test, slices=SLICES)


@step
def validate_model(
    tuned: lc.Tuned,
    prepared: lc.Prepared,
    min_auc: float = 0.65,
    min_delta: float = 0.01,
    max_slice_drop: float = 0.05,
    min_slice_rows: int = 200,
) -> lc.GateDecision:
    """Gate: ROC AUC above ``min_auc``, no worse than production, no slice much worse.

    "No worse" is non-inferiority: the 95% interval of the AUC difference must
    stay above ``-min_delta``. Slices of fewer than ``min_slice_rows`` test rows
    are reported but not gated: the AUC of a few dozen flights is mostly noise.
    """
    return lc.validate(
        tuned.best_model,
        prepared.test,
        TARGET,
        thresholds={"roc_auc": min_auc},
        champion=f"{MODEL}@production",
        registry=get_registry(),
        min_delta=min_delta,
        slices=SLICES,
        max_slice_drop=max_slice_drop,
        min_slice_rows=min_slice_rows,
    )


@step
def register_model(
    tuned: lc.Tuned,
    prepared: lc.Prepared,
    dataset: lc.Dataset,
    profile: lc.Profile,
    evaluation: lc.Evaluation,
    decision: lc.GateDecision,
    alias: str = "challenger",
) -> dict[str, Any]:
    """Register the model with its lineage, as the ``challenger``, if the gate passed.

    Only delivery moves ``staging`` and ``production`` (``conveyor deploy``), through
    the checks and approvals of the model's deployment policy.
    """
    if not decision.passed:
        return {"registered": False, "reasons": list(decision.reasons)}
    version = lc.register_version(
        get_registry(),
        MODEL,
        tuned,
        prepared.X_test.head(5),
        evaluation=evaluation,
        decision=decision,
        data_digests={"training_data": dataset.fingerprint},
        profile=profile.to_bytes(),
        # What the estimator sees (after imputation and encoding), for skew at serving.
        transformed_profile=_transformed_profile(tuned, prepared),
        run_id=_step_run_id(),  # this step's run: the version's lineage starts here
        alias=alias,
    )
    return {"registered": True, "version": version.version, "reasons": list(decision.reasons)}


def _transformed_profile(tuned: lc.Tuned, prepared: lc.Prepared) -> bytes | None:
    from conveyor.monitoring import profile

    features = lc.transformed_features(tuned, prepared.X_train)
    return None if features is None else profile(features).to_bytes()


def _step_run_id() -> str | None:
    run = conveyor.active_run()  # inside a pipeline, the step's own run
    return None if run is None else run.id


@pipeline
def training(
    data: str = "data/flights-2013-*.parquet",
    n_trials: int = 8,
    seed: int = 0,
    alias: str = "challenger",
    max_slice_drop: float = 0.05,
) -> None:
    """Train, gate and register the flights model from the Parquet files under ``data``."""
    dataset = lc.extract(data)
    profile, schema = lc.analyze(dataset)
    prepared = lc.prepare(
        dataset,
        schema,
        target=TARGET,
        split="time",
        time_column="time_hour",
        features=FEATURES,
        seed=seed,
    )
    tuned = tune_model(prepared, n_trials=n_trials, seed=seed)
    evaluation = evaluate_model(tuned, prepared)
    decision = validate_model(tuned, prepared, max_slice_drop=max_slice_drop)
    register_model(tuned, prepared, dataset, profile, evaluation, decision, alias=alias)
