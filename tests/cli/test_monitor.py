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
