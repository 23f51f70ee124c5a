import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_model_store

# The real entry point (`main`: one-line errors, exit codes); the group is added here
# only while cli/app.py does not register it yet.
_MAIN = (
    "from conveyor.cli import app, models\n"
    "if not any(g.name == 'models' for g in app.app.registered_groups):\n"
    "    app.app.add_typer(models.app, name='models')\n"
    "app.main()\n"
)


@pytest.fixture
def models(project):
    """The CLI project with three versions of 'flights' and one of 'churn'."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    state = project.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(state / "artifacts")))
    for c in (0.01, 0.1, 1.0):
        model = LogisticRegression(C=c).fit(X, y)
        registry.register_model("flights", model, X.head(5), metrics={"auc": c})
    registry.register_model("churn", LogisticRegression().fit(X, y), X.head(5))
    store.close()
    return project


def _cli(project, *args, ok=True, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    done = subprocess.run(
        [sys.executable, "-c", _MAIN, *args],
        cwd=project.root,
        env=clean | {"COLUMNS": "160"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def test_list(models):
    data = json.loads(_cli(models, "models", "list", "--json").stdout)
    assert [(m["name"], m["latest_version"]) for m in data] == [("churn", 1), ("flights", 3)]
    table = _cli(models, "models", "list").stdout
    assert "2 model(s)" in table
    assert "flights" in table


def test_show_a_model_and_a_version(models):
    data = json.loads(_cli(models, "models", "show", "flights", "--json").stdout)
    assert [v["version"] for v in data["versions"]] == [1, 2, 3]
    assert "versions" in _cli(models, "models", "show", "flights").stdout
    one = json.loads(_cli(models, "models", "show", "flights/2", "--json").stdout)
    assert (one["version"], one["format"], one["metrics"]) == (2, "skops", {"auc": 0.1})
    assert one["files"]["manifest.json"] == one["manifest_sha256"]
    assert one["signature"]["columns"][0]["name"] == "mean radius"
    text = _cli(models, "models", "show", "flights/2").stdout
    assert "flights/2" in text
    assert "scikit-learn" in text


def test_alias_history_and_rollback(models):
    refused = _cli(models, "models", "alias", "flights", "production", "1", "-r", "x", ok=False)
    assert refused.returncode == 1
    assert "conveyor deploy flights/1 --to production" in refused.stderr
    assert "--force" in refused.stderr
    first = _cli(
        models, "models", "alias", "flights", "production", "1", "--reason", "launch", "--force"
    )
    assert "flights@production: (none) → 1" in first.stdout
    moved = json.loads(
        _cli(
            models,
            *("models", "alias", "flights", "production", "3", "-r", "better auc", "--json"),
            "--force",
            CONVEYOR_ACTOR="release-bot",
        ).stdout
    )
    assert (moved["from_version"], moved["to_version"], moved["actor"]) == (1, 3, "release-bot")
    shown = json.loads(_cli(models, "models", "show", "flights@production", "--json").stdout)
    assert shown["version"] == 3
    back = _cli(models, "models", "rollback", "flights", "production", "--reason", "regressed")
    assert "flights@production: 3 → 1" in back.stdout
    history = json.loads(_cli(models, "models", "history", "flights", "--json").stdout)
    assert [(e["action"], e["from_version"], e["to_version"]) for e in history] == [
        ("set", None, 1),
        ("set", 1, 3),
        ("rollback", 3, 1),
    ]
    forced = "forced past the deployment policy: "
    assert [e["reason"] for e in history] == [f"{forced}launch", f"{forced}better auc", "regressed"]
    table = _cli(models, "models", "history", "flights", "--alias", "production").stdout
    assert "3 alias event(s)" in table
    assert "regressed" in table
    gone = _cli(models, "models", "delete-alias", "flights", "production", "-r", "retire")
    assert "1 → (removed)" in gone.stdout


def test_errors_are_one_line_and_list_what_exists(models):
    done = _cli(models, "models", "show", "flight", ok=False)
    assert done.returncode == 1
    assert "registered models: churn, flights" in done.stderr
    assert "Traceback" not in done.stderr
    done = _cli(models, "models", "show", "flights@production", ok=False)
    assert "its versions: 1 to 3" in done.stderr
    done = _cli(models, "models", "alias", "flights", "challenger", "9", "-r", "x", ok=False)
    assert "no version 9" in done.stderr
    done = _cli(models, "models", "rollback", "flights", "staging", "-r", "x", ok=False)
    assert "never been set" in done.stderr
    assert _cli(models, "models", "alias", "flights", "production", "1", ok=False).returncode == 2


def test_gc_keeps_registered_packages(models):
    _cli(models, "gc", "--min-age-hours", "0")
    state = models.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(state / "artifacts")))
    loaded = registry.load_model("flights/1")
    loaded.check()
    assert np.asarray(loaded.expected_output).shape == (5,)
    store.close()
