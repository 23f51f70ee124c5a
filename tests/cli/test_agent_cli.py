"""``conveyor agent``, ``conveyor trigger`` and ``conveyor triggers`` on a real project."""

import json

import pytest

from conveyor.stores.backends import open_loop_store, open_metadata_store

CONFIG = """
triggers:
  - name: new-data
    pipeline: pipelines/training.py:training
    data: {path: "data/part-*.txt"}
    params: {n: 3}
  - name: nightly
    pipeline: pipelines/training.py:training
    schedule: "0 2 * * *"
  - name: by-hand
    pipeline: pipelines/training.py:training
  - name: broken
    pipeline: pipelines/training.py:training
    params: {scale: -1}
    attempts: 2
    backoff: 0s
"""


@pytest.fixture
def project(pipeline_project):
    (pipeline_project.root / "conveyor.yaml").write_text(CONFIG)
    (pipeline_project.root / "data").mkdir()
    return pipeline_project


def db(project):
    return f"sqlite:///{project.root / '.conveyor' / 'conveyor.db'}"


def test_agent_once_runs_new_data_then_lists_and_shows_history(project):
    (project.root / "data" / "part-01.txt").write_text("x")
    first = project.cli("agent", "--once")
    assert "new-data data succeeded run " in first.stdout
    assert "1 new file: part-01.txt" in first.stdout
    assert project.cli("agent", "--once").stdout.strip() == "nothing due (4 trigger(s))"

    listed = {t["name"]: t for t in json.loads(project.cli("triggers", "list", "--json").stdout)}
    assert listed["new-data"]["last_event"]["status"] == "succeeded"
    assert json.loads(listed["new-data"]["watermark"])["names"][0].endswith("part-01.txt")
    assert listed["nightly"]["next_due"].endswith("T02:00:00Z")
    assert listed["by-hand"]["next_due"] == "by hand (conveyor trigger)"
    table = project.cli("triggers", "list").stdout
    assert "cron 0 2 * * *" in table
    assert "1 file(s), newest" in table

    [event] = json.loads(project.cli("triggers", "history", "new-data", "--json").stdout)
    assert event["status"] == "succeeded"
    store = open_metadata_store(db(project))
    assert store.get_run(event["run_id"]).params == {"n": "3", "scale": "1.0"}
    store.close()


def test_a_manual_request_waits_for_the_agent_or_runs_now(project):
    asked = project.cli("trigger", "by-hand", "--reason", "labels fixed", "-p", "n=7")
    assert "pending; the next agent pass runs it" in asked.stdout
    ran = project.cli("agent", "--once", "--no-deliver")
    assert "by-hand manual succeeded" in ran.stdout
    now = project.cli("trigger", "by-hand", "--reason", "right now", "--now")
    assert "by-hand manual succeeded" in now.stdout
    events = json.loads(project.cli("triggers", "history", "by-hand", "--json").stdout)
    assert [(e["reason"], e["status"]) for e in events] == [
        ("labels fixed", "succeeded"),
        ("right now", "succeeded"),
    ]
    assert events[0]["detail"]["params"] == {"n": 7}
    store = open_metadata_store(db(project))
    assert store.get_run(events[0]["run_id"]).params["n"] == "7"
    store.close()


def test_a_failing_pipeline_is_retried_then_alerts_and_exits_1(project):
    done = project.cli("trigger", "broken", "--reason", "try it", "--now", ok=False)
    assert done.returncode == 1
    assert "attempt 1 failed: step 'total' failed: ValueError: scale must not be negative" in (
        done.stdout.replace("\n", " ")
    )
    [event] = json.loads(project.cli("triggers", "history", "broken", "--json").stdout)
    assert event["status"] == "failed"
    assert len(event["detail"]["attempts"]) == 2
    store = open_loop_store(db(project))
    [alert] = store.list_alerts(source="agent")
    assert alert.rule == "pipeline_failed"
    store.close()


def test_bad_input_is_one_clear_line(project):
    unknown = project.cli("trigger", "nope", "--reason", "x", ok=False)
    assert unknown.returncode == 1
    assert "no trigger 'nope' is declared; declared: new-data, nightly, by-hand, broken" in (
        unknown.stderr.replace("\n", " ")
    )
    bad_param = project.cli("trigger", "by-hand", "--reason", "x", "-p", "n=many", ok=False)
    assert "cannot read 'many'" in bad_param.stderr
    interval = project.cli("agent", "--interval", "soon", ok=False)
    assert "--interval: must be a duration" in interval.stderr
    (project.root / "conveyor.yaml").write_text(
        "triggers:\n  - {name: n, pipeline: 'p.py:p', schedule: '0 25 * * *'}\n"
    )
    bad = project.cli("agent", "--once", ok=False)
    assert bad.returncode == 1
    assert "triggers[0].schedule: hour '25' is out of range; allowed 0-23" in bad.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr + interval.stderr
    (project.root / "conveyor.yaml").write_text("experiment: x\n")
    assert "none declared" in project.cli("agent", "--once", ok=False).stderr
