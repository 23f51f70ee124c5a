"""``conveyor deploy / approve / rollback / canary`` in a real project, as real processes."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_model_store

CONFIG = """
deployments:
  flights:
    production: {approval: required, approvers: [alice, bob]}
    quality: {roc_auc: {min: 0.65}}
    load: {requests: 20, concurrency: 2}
"""


@pytest.fixture
def flights(project):
    """flights/1 (sound) and flights/2 (NaN probabilities) registered; a policy in conveyor.yaml."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    (project.root / "conveyor.yaml").write_text(CONFIG)
    state = project.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(state / "artifacts")))
    good = LogisticRegression(max_iter=2000).fit(X, y)
    broken = LogisticRegression(max_iter=2000).fit(X, y)
    broken.coef_ = np.full_like(broken.coef_, np.nan)
    registry.register_model("flights", good, X.head(5), metrics={"roc_auc": 0.95})
    registry.register_model("flights", broken, X.head(5), metrics={"roc_auc": 0.95})
    store.close()
    return project


def test_staged_promotion_with_approval_from_the_command_line(flights):
    staged = json.loads(flights.cli("deploy", "flights/1", "--to", "staging", "--json").stdout)
    assert staged["moved"] is True
    assert staged["to_version"] == 1
    assert [c["name"] for c in staged["checks"]] == ["environment", "infra", "load", "quality"]

    pending = flights.cli("deploy", "flights/1", "--to", "production").stdout
    assert "environment" in pending
    assert "pass" in pending
    assert "(reused from attempt" in pending
    assert "alice or bob may approve with conveyor approve flights/1 --to production" in (
        " ".join(pending.split())
    )

    refused = flights.cli(
        "approve", "flights/1", "--to", "production", "--reason", "fine", "--actor", "mallory",
        ok=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "error: 'mallory' may not approve flights/1 for production: only alice or bob" in (
        " ".join(refused.stderr.split())
    )
    assert "Traceback" not in refused.stderr

    done = flights.cli(
        "approve", "flights/1", "--to", "production", "--reason", "AUC 0.95", "--actor", "alice"
    )  # fmt: skip
    assert "flights/1 moved to production" in done.stdout

    events = json.loads(flights.cli("models", "history", "flights", "--json").stdout)
    production = [e for e in events if e["alias"] == "production"][-1]
    assert production["actor"] == "alice"
    assert "approved by alice: AUC 0.95" in production["reason"]
    names = [c["name"] for c in production["checks"]]
    assert names[:4] == ["environment", "infra", "load", "quality"]
    assert names[-1] == "promotion"

    back = flights.cli("rollback", "flights", "production", "--actor", "carol").stdout
    assert "flights@production: 1 → (removed)  (rolled back by carol)" in back


def test_a_failing_check_exits_1_with_the_table_and_the_alias_unchanged(flights):
    state = flights.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    Registry(store, open_artifact_store(str(state / "artifacts"))).set_alias(
        "flights", "staging", 1
    )
    store.close()
    failed = flights.cli("deploy", "flights/2", "--to", "staging", ok=False)
    assert failed.returncode == 1
    assert "FAIL" in failed.stdout
    assert "non-finite outputs" in failed.stdout
    assert "stopped at the infra check" in " ".join(failed.stdout.split())
    shown = json.loads(flights.cli("models", "show", "flights@staging", "--json").stdout)
    assert shown["version"] == 1


def test_bad_input_and_the_canary_commands(flights):
    bad = flights.cli("deploy", "flights/1", "--to", "prod", ok=False)
    assert bad.returncode == 1
    assert "must be one of the policy's stages staging, production" in bad.stderr
    missing = flights.cli("deploy", "flights/1", "--to", "staging", "--target", "y", ok=False)
    assert "--target: needs --holdout" in missing.stderr
    assert (
        "no canary runs on flights@production" in flights.cli("canary", "status", "flights").stdout
    )
    decision = json.loads(flights.cli("canary", "evaluate", "flights", "--json").stdout)
    assert decision["action"] == "none"
