"""`conveyor ci` in a small real project: its tests with the plugin, then its data contracts."""

import pandas as pd
import pytest
import yaml

from conftest import run_cli
from conveyor.cli.ci import parse_settings
from conveyor.errors import ConfigError
from conveyor.lifecycle import analyze

GOOD_TESTS = """
import math
from conveyor.testing import assert_converges, assert_no_nan


def test_features():
    assert_no_nan([1.0, 2.0], name="features")


def test_learns():
    assert_converges(lambda data: [1.0, 0.4], None)


def test_other():
    assert math.isfinite(1.0)
"""

FAILING_TEST = """
from conveyor.testing import assert_no_nan


def test_predictions():
    assert_no_nan([0.5, float("nan")], name="predictions")
"""


@pytest.fixture
def ci_project(tmp_path):
    (tmp_path / "conveyor.yaml").write_text("experiment: ci\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_model.py").write_text(GOOD_TESTS)
    frame = pd.DataFrame({"carrier": ["AA", "UA"] * 10, "distance": range(100, 120)})
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "jan.parquet")
    analyze(frame)[1].save(tmp_path / "schema.yaml")
    return tmp_path


def test_a_passing_project_shows_each_kind_of_check_and_its_contracts(ci_project):
    done = run_cli(ci_project, "ci")
    out = done.stdout
    assert "3 passed" in out
    for label in ("no NaN", "convergence", "other tests", "data/jan.parquet", "ci passed"):
        assert label in out, out
    assert "feature logic" not in out  # no property-based test here


def test_a_failing_test_fails_ci_naming_it(ci_project):
    (ci_project / "tests" / "test_predictions.py").write_text(FAILING_TEST)
    done = run_cli(ci_project, "ci", "--no-contracts", ok=False)
    assert done.returncode == 1
    assert "ci failed: 1 test(s) failed: tests/test_predictions.py::test_predictions" in done.stdout
    assert "predictions: 1 NaN/inf value(s) of 2" in done.stdout  # pytest's own report
    assert "data contracts" not in done.stdout


def test_data_breaking_its_schema_fails_ci(ci_project):
    bad = pd.DataFrame({"carrier": ["AA", None], "distance": ["far", "near"]})
    bad.to_parquet(ci_project / "data" / "feb.parquet")
    done = run_cli(ci_project, "ci", "-k", "features", ok=False)
    assert done.returncode == 1
    assert "1 passed" in done.stdout
    assert "data/feb.parquet breaks schema.yaml (carrier: required_nulls)" in done.stdout


def test_declared_contracts_and_test_folder_are_used(ci_project):
    (ci_project / "checks").mkdir()
    (ci_project / "tests" / "test_model.py").rename(ci_project / "checks" / "test_model.py")
    (ci_project / "conveyor.yaml").write_text(
        "ci:\n  tests: checks\n  contracts:\n"
        "    - {data: 'data/*.parquet', schema: schema.yaml, strict: true}\n"
    )
    pd.DataFrame({"carrier": ["DL"], "distance": [100]}).to_parquet(
        ci_project / "data" / "mar.parquet"
    )
    done = run_cli(ci_project, "ci", ok=False)
    assert "3 passed" in done.stdout
    assert "data/mar.parquet breaks schema.yaml (carrier: unseen_category)" in done.stdout


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("[tests]", "ci: must be a mapping"),
        ("{test: tests}", "ci.test: unknown key"),
        ("{pytest_args: -x}", "ci.pytest_args"),
        ("{contracts: [{data: x.parquet}]}", "ci.contracts[0].schema: required"),
        ("{contracts: [{data: x, schema: y, strict: maybe}]}", "ci.contracts[0].strict"),
        ("{contracts: {data: x}}", "ci.contracts: must be a list"),
    ],
)
def test_a_bad_ci_section_names_its_key(section, field):
    with pytest.raises(ConfigError) as caught:
        parse_settings(yaml.safe_load(section))
    assert field in str(caught.value)


def test_a_bad_ci_section_is_one_red_line(tmp_path):
    (tmp_path / "conveyor.yaml").write_text("ci: {test: tests}\n")
    done = run_cli(tmp_path, "ci", ok=False)
    assert done.returncode == 1
    assert "ci.test: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_tests_is_a_failure(tmp_path):
    (tmp_path / "conveyor.yaml").write_text("experiment: empty\n")
    done = run_cli(tmp_path, "ci", ok=False)
    assert "no test folder" in done.stderr
    (tmp_path / "tests").mkdir()
    done = run_cli(tmp_path, "ci", ok=False)
    assert done.returncode == 1
    assert "no tests ran in" in done.stdout
