"""``conveyor alerts`` run as a real process over a project's loop store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.core.loop import NewAlert
from conveyor.stores.backends import open_loop_store


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conveyor.yaml").write_text("experiment: alerts\n")
    (tmp_path / ".conveyor").mkdir()
    store = open_loop_store(f"sqlite:///{tmp_path / '.conveyor' / 'conveyor.db'}")
    store.add_alert(
        NewAlert(
            "flights-production",
            "drift_share",
            "warning",
            "40% of input columns drifted",
            model="flights",
            version=2,
            payload={"retrain": {"pipeline": "training"}},
        )
    )
    store.add_alert(NewAlert("flights-production", "quality", "critical", "roc_auc 0.6 below 0.65"))
    store.add_alert(NewAlert("other", "latency", "warning", "latency p99 80 ms above 50 ms"))
    store.close()
    return tmp_path


def test_list_shows_a_table(project):
    out = run_cli(project, "alerts", "list").stdout
    for word in ("drift_share", "quality", "latency", "critical", "flights/2", "retrain training"):
        assert word in out


def test_list_filters_and_prints_json(project):
    found = json.loads(run_cli(project, "alerts", "list", "--monitor", "other", "--json").stdout)
    assert [(a["id"], a["rule"], a["state"]) for a in found] == [(3, "latency", "open")]
    newest = json.loads(run_cli(project, "alerts", "list", "--limit", "1", "--json").stdout)
    assert [a["id"] for a in newest] == [3]


def test_ack_and_resolve_move_the_state(project):
    assert "alert #1 (drift_share, flights-production) is now acknowledged" in (
        run_cli(project, "alerts", "ack", "1").stdout
    )
    run_cli(project, "alerts", "resolve", "2")
    listed = run_cli(project, "alerts", "list", "--state", "open", "--json").stdout
    assert [a["id"] for a in json.loads(listed)] == [3]
    resolved = run_cli(project, "alerts", "list", "--state", "resolved", "--json").stdout
    assert [a["rule"] for a in json.loads(resolved)] == ["quality"]


def test_bad_input_is_one_clear_line(project):
    missing = run_cli(project, "alerts", "ack", "99", ok=False)
    assert missing.returncode == 1
    assert "alert 99 does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    state = run_cli(project, "alerts", "list", "--state", "closed", ok=False)
    assert state.returncode == 1
    assert "--state: must be one of open, acknowledged, resolved" in state.stderr
    assert run_cli(project, "alerts", "ack", "one", ok=False).returncode == 2
    empty = run_cli(project, "alerts", "list", "--monitor", "nobody").stdout
    assert "no alerts" in empty
