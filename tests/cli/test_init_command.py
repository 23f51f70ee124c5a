import os
import re
import subprocess
import sys

import pytest
import yaml


def _init(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "init", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_writes_a_project(tmp_path):
    done = _init(tmp_path, "flights", "--no-data")
    assert done.returncode == 0, done.stderr
    root = tmp_path / "flights"
    for rel in ("conveyor.yaml", "README.md", "pipelines/training.py", "tests/test_training.py"):
        assert (root / rel).is_file(), rel
    settings = yaml.safe_load((root / "conveyor.yaml").read_text())
    assert settings["experiment"] == "flights"
    assert "def training(" in (root / "pipelines" / "training.py").read_text()
    assert not (root / "data").exists()


def test_init_lands_the_data(tmp_path):
    import pandas as pd

    assert _init(tmp_path, "demo").returncode == 0
    jan = pd.read_parquet(tmp_path / "demo" / "data" / "flights-2013-01.parquet")
    assert len(jan) > 20_000
    assert "dep_delay" not in jan.columns  # it leaks the answer
    assert set(jan["month"]) == {1}


def test_init_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    done = _init(tmp_path, "busy", "--no-data")
    assert done.returncode == 1
    assert "not empty" in done.stderr
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


# --- --ci github: the workflows, checked against the structure GitHub requires ------------

WORKFLOW_KEYS = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
JOB_KEYS = {
    "name", "runs-on", "timeout-minutes", "steps", "environment", "env", "permissions",
    "needs", "if", "strategy", "concurrency", "defaults", "outputs", "services", "container",
}  # fmt: skip
STEP_KEYS = {"name", "id", "uses", "run", "with", "env", "if", "shell", "timeout-minutes",
             "continue-on-error", "working-directory"}  # fmt: skip
EVENTS = {"push", "pull_request", "workflow_dispatch", "repository_dispatch", "schedule"}


def check_workflow(text: str) -> dict:
    """The rules of GitHub's workflow schema that matter here, and a few of our own."""
    data = yaml.safe_load(text)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    assert set(data) <= WORKFLOW_KEYS, set(data) - WORKFLOW_KEYS
    assert isinstance(data["name"], str)
    assert set(data["on"]) <= EVENTS
    assert data["permissions"] == {"contents": "read"}, "least privilege"
    assert data["jobs"]
    for job_id, job in data["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job_id)
        assert set(job) <= JOB_KEYS, set(job) - JOB_KEYS
        assert job["runs-on"] == "ubuntu-latest"
        assert isinstance(job["timeout-minutes"], int)
        for step in job["steps"]:
            assert set(step) <= STEP_KEYS, set(step) - STEP_KEYS
            assert ("uses" in step) != ("run" in step), "a step either uses an action or runs"
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), "actions are pinned"
            else:
                assert "${{" not in step["run"], "no expressions inside scripts (injection)"
            assert "{python}" not in str(step)
            assert "{conveyor_version}" not in str(step)
    return data


def test_init_with_github_ci_writes_valid_workflows(tmp_path):
    from conveyor import __version__

    done = _init(tmp_path, "shop", "--no-data", "--ci", "github")
    assert done.returncode == 0, done.stderr
    workflows = tmp_path / "shop" / ".github" / "workflows"
    ci = check_workflow((workflows / "ci.yml").read_text())
    assert set(ci["on"]) == {"push", "pull_request"}
    runs = [s["run"] for s in ci["jobs"]["test"]["steps"] if "run" in s]
    assert runs[-1] == "conveyor ci"
    assert f"conveyor-mlops[demo,serve]=={__version__}" in runs[0]
    setup = next(s for s in ci["jobs"]["test"]["steps"] if "setup-python" in s.get("uses", ""))
    assert setup["with"]["python-version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    cd = check_workflow((workflows / "cd.yml").read_text())
    assert cd["on"]["repository_dispatch"] == {"types": ["model-version"]}
    assert cd["on"]["workflow_dispatch"]["inputs"]["version"]["required"] is True
    job = cd["jobs"]["deliver"]
    assert "client_payload.version" in job["env"]["MODEL_VERSION"]
    assert job["steps"][-1]["run"] == 'conveyor deploy "$MODEL_VERSION" --to staging'
    for rel in ("tests/test_features.py", "tests/test_model.py", "tests/test_data_contracts.py"):
        assert (tmp_path / "shop" / rel).is_file(), rel


def test_init_refuses_an_unknown_ci_provider(tmp_path):
    done = _init(tmp_path, "shop", "--no-data", "--ci", "jenkins")
    assert done.returncode == 1
    assert "--ci" in done.stderr
    assert "github" in done.stderr
    assert not (tmp_path / "shop").exists()


@pytest.mark.slow
def test_the_new_project_passes_its_own_ci(tmp_path):
    """`conveyor init --ci github` then `conveyor ci`: the template's tests all pass (~20 s)."""
    assert _init(tmp_path, "demo", "--ci", "github").returncode == 0
    assert (tmp_path / "demo" / "schema.yaml").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "ci"],
        cwd=tmp_path / "demo", capture_output=True, text=True, timeout=300,
        env=env | {"COLUMNS": "160"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("feature logic", "convergence", "no NaN", "pipeline smoke", "ci passed"):
        assert label in done.stdout
