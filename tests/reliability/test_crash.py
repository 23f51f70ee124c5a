"""kill -9 in the middle of logging: acknowledged points survive, the run reads FAILED."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.core.entities import RunStatus
from conveyor.stores.backends import open_artifact_store, open_metadata_store

CHILD = Path(__file__).with_name("child_logger.py")


@pytest.mark.slow
def test_kill_9_keeps_acknowledged_points(metadata_url, tmp_path):
    artifacts = str(tmp_path / "artifacts")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "crash", metadata_url, artifacts, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    run_id = json.loads(proc.stdout.readline())["run_id"]
    acked = 0
    while acked < 30_000:
        line = proc.stdout.readline()
        assert line, "the logger died before it was killed"
        acked = json.loads(line)["acked"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    store = open_metadata_store(metadata_url)
    history = store.metric_history(run_id, "loss")
    steps = [m.step for m in history]
    assert len(steps) >= acked
    assert steps[:acked] == list(range(acked))  # every acknowledged point, once, in order
    assert len(set(steps)) == len(steps)  # nothing duplicated
    assert store.get_run(run_id).status is RunStatus.RUNNING  # until the grace runs out

    time.sleep(1.5)
    assert run_id in store.reap(grace_ms=1000)
    assert store.get_run(run_id).status is RunStatus.FAILED

    cas = open_artifact_store(artifacts)
    records = store.list_artifacts(run_id)
    assert records, "the logger logged artifacts before it was killed"
    for record in records:  # every visible artifact is whole: its bytes match its hash
        assert len(cas.get_bytes(record.sha256)) == record.size
    assert all(".tmp" not in key for key in cas.byte_store.list_keys())
    store.close()


def test_ctrl_c_ends_the_run_killed(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "interrupt", url, str(tmp_path / "a")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = json.loads(proc.stdout.readline())["run_id"]
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    store = open_metadata_store(url)
    run = store.get_run(run_id)
    assert run.status is RunStatus.KILLED
    assert len(store.metric_history(run_id, "loss")) > 0  # what was logged before is kept
