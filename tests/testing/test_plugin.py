"""The pytest plugin, loaded into a real pytest process over a user's test folder."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

USER_TESTS = """
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import conveyor
from conveyor.testing import assert_no_nan, assert_converges


def test_store_fixture_records_runs(conveyor_store):
    with conveyor.start_run("ci") as run:
        conveyor.log_metric("loss", 0.5)
    assert conveyor_store.tracker.get_run(run.id).metrics["loss"] == 0.5
    assert conveyor_store.metadata_uri.endswith("conveyor-store/conveyor.db")
    assert (conveyor_store.root / "conveyor.db").is_file()
    assert conveyor_store.registry.list_models() == []


def test_project_fixture_is_the_current_folder(conveyor_project):
    import os
    from pathlib import Path

    assert Path(os.getcwd()) == conveyor_project
    assert (conveyor_project / "conveyor.yaml").is_file()
    assert "CONVEYOR_METADATA_URI" not in os.environ


def test_features_fail(conveyor_store):
    assert_no_nan(pd.DataFrame({"x": [1.0, float("nan")]}), name="features")


def test_converges():
    assert_converges(lambda data: [1.0, 0.5], None)


@settings(max_examples=5)
@given(st.integers())
def test_property(n):
    assert isinstance(n, int)


def test_plain():
    pass


@__import__("pytest").fixture
def broken():
    raise RuntimeError("no fixture for you")


def test_setup_error(broken):
    pass
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    (root / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_METADATA_URI"] = f"sqlite:///{root / 'leak.db'}"  # the fixture must hide it
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "conveyor.testing.plugin", "--conveyor-report", "out/report.json", "test_user.py"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads((root / "out" / "report.json").read_text())
    return done, report["tests"], report


def test_the_fixtures_work_in_a_user_project(outcome):
    done, tests, _ = outcome
    for name in ("store_fixture_records_runs", "project_fixture_is_the_current_folder"):
        assert tests[f"test_user.py::test_{name}"]["outcome"] == "passed", done.stdout


def test_the_report_says_which_checks_each_test_made(outcome):
    _, tests, report = outcome
    assert tests["test_user.py::test_features_fail"]["checks"] == ["no_nan"]
    assert tests["test_user.py::test_converges"]["checks"] == ["converges"]
    assert tests["test_user.py::test_property"]["checks"] == ["property"]
    assert tests["test_user.py::test_plain"]["checks"] == []
    assert report["exit_status"] == 1


def test_the_report_keeps_failures_and_setup_errors_with_their_message(outcome):
    done, tests, _ = outcome
    failed = tests["test_user.py::test_features_fail"]
    assert failed["outcome"] == "failed"
    assert "features: column 'x' has 1 NaN/inf value(s) of 2" in failed["message"]
    assert tests["test_user.py::test_setup_error"]["outcome"] == "error"
    assert "no fixture for you" in tests["test_user.py::test_setup_error"]["message"]
    assert "1 failed, 5 passed, 1 error" in done.stdout


def test_without_the_option_no_report_is_written(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x(conveyor_store):\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "conveyor.testing.plugin", "test_x.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "1 passed" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["test_x.py"]
