"""``conveyor monitor`` run as a real process on Parquet files and stored profiles."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Runs the real entry point; mounts the monitor group first while app.py does not yet.
_RUN = (
    "import sys\n"
    "from conveyor.cli import app as cli, monitor\n"
    "if not any(g.name == 'monitor' for g in cli.app.registered_groups):\n"
    "    cli.app.add_typer(monitor.app, name='monitor')\n"
    "sys.argv = ['conveyor', *sys.argv[1:]]\n"
    "cli.main()\n"
)


def run(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stderr
    return done


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, shift, rows in (("ref", 0.0, 3000), ("cur", 0.5, 2000)):
        pd.DataFrame(
            {
                "amount": rng.normal(shift, 1, rows),
                "steady": rng.normal(0, 1, rows),
                "city": rng.choice(
                    ["oslo", "rome", "lima"], rows, p=[0.6 - shift / 2, 0.3, 0.1 + shift / 2]
                ),
            }
        ).to_parquet(tmp_path / f"{name}.parquet")
    return tmp_path


def test_drift_prints_a_table_and_the_verdict(data):
    out = run(data, "monitor", "drift", "-r", "ref.parquet", "-c", "cur.parquet").stdout
    for word in ("amount", "steady", "city", "wasserstein", "jensenshannon", "dataset:"):
        assert word in out
    assert "2 of 3 tested column(s) drifted" in out


def test_drift_json_with_methods_and_thresholds(data):
    args = ["-r", "ref.parquet", "-c", "cur.parquet", "-m", "amount=ks", "-t", "steady=0.0"]
    report = json.loads(run(data, "monitor", "drift", *args, "--json").stdout)
    assert report["columns"]["amount"]["method"] == "ks"
    assert report["columns"]["amount"]["p_value"] < 1e-6
    assert report["columns"]["steady"]["threshold"] == 0.0
    assert report["columns"]["steady"]["drifted"] is True
    assert report["drifted"] is True
    assert report["mode"] == "exact"


def test_html_report_has_a_figure_per_drifted_column(data):
    run(data, "monitor", "drift", "-r", "ref.parquet", "-c", "cur.parquet", "--html", "r.html")
    html = (data / "r.html").read_text()
    assert html.count('<figure class="drift-column"') == 2
    assert 'data-column="amount"' in html


def test_profile_then_sketch_mode_from_the_stored_profile(data):
    summary = json.loads(run(data, "monitor", "profile", "ref.parquet", "--json").stdout)
    assert summary["rows"] == 3000
    assert summary["columns"]["city"]["distinct"] == 3
    table = run(data, "monitor", "profile", "ref.parquet", "--out", "ref.profile").stdout
    assert "amount" in table
    args = ["-r", "ref.profile", "-c", "cur.parquet", "--mode", "sketch", "--json"]
    report = json.loads(run(data, "monitor", "drift", *args).stdout)
    assert report["mode"] == "sketch"
    assert report["columns"]["amount"]["drifted"] is True
    assert report["columns"]["amount"]["error_bound"] >= 0


def test_fail_on_drift_exits_3(data):
    run(
        data,
        "monitor",
        "drift",
        "-r",
        "ref.parquet",
        "-c",
        "cur.parquet",
        "--fail-on-drift",
        code=3,
    )
    run(data, "monitor", "drift", "-r", "ref.parquet", "-c", "ref.parquet", "--fail-on-drift")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "amount"], "--method: expects COLUMN=VALUE"),
        (["-m", "amount=magic"], "amount: unknown drift method 'magic'"),
        (["-t", "amount=high"], "--threshold: 'high' is not a number"),
        (["--mode", "fast"], "mode: must be 'exact' or 'sketch'"),
    ],
)
def test_bad_options_are_one_clear_line(data, args, message):
    done = run(data, "monitor", "drift", "-r", "ref.parquet", "-c", "cur.parquet", *args, code=1)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_files_are_one_clear_line(data):
    (data / "junk.txt").write_text("hello")
    done = run(data, "monitor", "drift", "-r", "nope.parquet", "-c", "cur.parquet", code=1)
    assert "--reference: nope.parquet is not a file" in done.stderr
    done = run(data, "monitor", "drift", "-r", "junk.txt", "-c", "cur.parquet", code=1)
    assert "is not a conveyor profile" in done.stderr
    run(data, "monitor", "profile", "ref.parquet", "--out", "ref.profile")
    done = run(data, "monitor", "drift", "-r", "ref.profile", "-c", "cur.parquet", code=1)
    assert "--mode sketch" in done.stderr


# --- monitors from conveyor.yaml: `monitor run` and `monitor history` ----------------------

HOUR = 3_600_000
START = 1_362_096_000_000  # 2013-03-01 00:00 UTC

MONITORS_YAML = """
experiment: flights
monitors:
  - name: flights-production
    model: flights
    window: 1h
    drift: {share: 0.3}
    quality: {accuracy: {min: 0.9}}
    min_rows: 50
    sinks: [log]
"""


def _capture_table(start: int, rows: int, shift: float, seed: int):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, rows)
    return pa.table(
        {
            "request_id": [f"{start}-{i}" for i in range(rows)],
            "row": pa.array(np.zeros(rows, np.int32)),
            "timestamp": pa.array(start + np.sort(rng.integers(0, HOUR, rows)), pa.int64()),
            "model": ["flights"] * rows,
            "version": pa.array(np.ones(rows, np.int64)),
            "route": ["primary"] * rows,
            "latency_ms": rng.gamma(2.0, 2.0, rows),
            "status": pa.array(np.full(rows, 200, np.int16)),
            "in.amount": x,
            "in.steady": rng.normal(0, 1, rows),
            "out.prediction": (x > 0).astype(np.int64),
        }
    )


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A project whose ``flights`` model served 3 hours; the third one drifted."""
    from sklearn.dummy import DummyClassifier

    from conveyor.monitoring import profile
    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store, open_model_store
    from conveyor.stores.capture import write_capture, write_feedback

    (tmp_path / "conveyor.yaml").write_text(MONITORS_YAML)
    state = tmp_path / ".conveyor"
    artifacts = open_artifact_store(str(state / "artifacts"))
    registry = Registry(open_model_store(f"sqlite:///{state / 'conveyor.db'}"), artifacts)
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"amount": rng.normal(0, 1, 2000), "steady": rng.normal(0, 1, 2000)})
    digest = artifacts.put_bytes(profile(reference).to_bytes()).sha256
    model = DummyClassifier().fit(reference[["amount"]], np.arange(2000) % 2)
    version = registry.register_model(
        "flights", model, reference[["amount"]].head(2), profile_sha256=digest
    )
    registry.set_alias("flights", "production", version.version, reason="test", actor="test")
    for hour, shift in enumerate((0.0, 0.0, 1.5)):
        table = _capture_table(START + hour * HOUR, 400, shift, seed=hour)
        write_capture(artifacts.byte_store, "flights", table)
    first = _capture_table(START, 400, 0.0, seed=0)
    labels = (np.asarray(first.column("in.amount")) > 0.6).astype(int).tolist()
    write_feedback(
        artifacts.byte_store,
        "flights",
        first.column("request_id").to_pylist(),
        labels,
        timestamp_ms=START + HOUR,
    )
    return tmp_path


def test_monitor_run_evaluates_closed_windows_once(served):
    done = run(served, "monitor", "run", "--now", "2013-03-01T03:10")
    out = done.stdout
    for word in ("flights-production", "2013-03-01 00:00", "2013-03-01 02:00", "drift", "100%"):
        assert word in out
    assert "#1 quality" in out  # accuracy below 0.9 on the labelled first hour
    assert "drift_share" in out
    assert "alert #" in done.stderr  # the log sink's line
    again = run(served, "monitor", "run", "--now", "2013-03-01T03:20").stdout
    assert "no window closed since the last run" in again
    ms = str(START + 4 * HOUR)
    (only,) = json.loads(run(served, "monitor", "run", "--now", ms, "--json").stdout)
    assert (only["window_start"], only["status"]) == (START + 3 * HOUR, "empty")


def test_monitor_history_prints_and_writes_html(served):
    run(served, "monitor", "run", "--now", "2013-03-01T03:00")
    out = run(served, "monitor", "history", "flights-production", "--html", "h.html").stdout
    assert "2013-03-01 02:00" in out
    assert "drift_share" in out
    page = (served / "h.html").read_text()
    assert "drift share of input columns" in page
    assert "<svg" in page
    windows = json.loads(run(served, "monitor", "history", "flights-production", "--json").stdout)
    assert [w["status"] for w in windows] == ["degraded", "ok", "drift"]
    assert windows[2]["drift_share"] == 0.5


def test_monitor_run_bad_input_is_one_clear_line(served, tmp_path):
    bad_now = run(served, "monitor", "run", "--now", "yesterday", code=1)
    assert "--now: must be epoch milliseconds or an ISO time" in bad_now.stderr
    unknown = run(served, "monitor", "run", "--monitor", "nope", code=1)
    assert "no monitor named 'nope'" in unknown.stderr
    history = run(served, "monitor", "history", "nope", code=1)
    assert "no evaluations of monitor 'nope'" in history.stderr
    (served / "conveyor.yaml").write_text(
        "monitors:\n  - name: m\n    model: f\n    window: 1 hour\n"
    )
    config = run(served, "monitor", "run", code=1)
    assert "monitors[0] (m).window: must be a duration" in config.stderr
    assert "Traceback" not in config.stderr
    (served / "conveyor.yaml").write_text("experiment: x\n")
    assert "no monitors" in run(served, "monitor", "run", code=1).stderr
