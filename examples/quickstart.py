"""The main job for now: a tracked training run on a bundled dataset.

Trains a gradient-boosting classifier on scikit-learn's bundled breast-cancer
data (no download), logs its parameters, a learning curve, the test metrics
and a confusion matrix, and prints where to look.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

import conveyor


def main() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import confusion_matrix, f1_score, log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    console = Console()
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    params = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1, "random_state": 0}
    started = time.perf_counter()
    with conveyor.start_run(
        experiment="quickstart", name="gbc-breast-cancer", tags={"dataset": "breast_cancer"}
    ) as run:
        conveyor.log_params(params)
        model = GradientBoostingClassifier(**params).fit(X_train, y_train)
        # The learning curve: test loss after each boosting stage.
        stages = model.staged_predict_proba(X_test)
        for step, proba in track(
            enumerate(stages, 1),
            total=params["n_estimators"],
            description="logging the learning curve",
        ):
            conveyor.log_metric("test_log_loss", log_loss(y_test, proba), step=step)
        proba = model.predict_proba(X_test)[:, 1]
        pred = (proba >= 0.5).astype(int)
        metrics = {
            "roc_auc": roc_auc_score(y_test, proba),
            "f1": f1_score(y_test, pred),
            "accuracy": float((pred == y_test).mean()),
        }
        conveyor.log_metrics(metrics, step=params["n_estimators"])
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "confusion_matrix.json"
            report.write_text(
                json.dumps({"labels": [0, 1], "matrix": confusion_matrix(y_test, pred).tolist()})
            )
            conveyor.log_artifact(report)
    elapsed = time.perf_counter() - started

    table = Table(title=f"run {run.id[:8]}: {elapsed:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(f"stored in {conveyor.load_settings().metadata_uri}")
    console.print("look at it with:")
    for command in (
        "conveyor runs list",
        f"conveyor runs show {run.id[:8]}",
        f"conveyor artifacts get {run.id[:8]} confusion_matrix.json --dest out/",
    ):
        console.print(f"  [bold].venv/bin/{command}[/]")


if __name__ == "__main__":
    main()
