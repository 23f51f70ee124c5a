import json

import pytest


@pytest.fixture
def ran(pipeline_project):
    out = pipeline_project.cli("run", "pipelines/training.py:training", "--json").stdout
    return pipeline_project, json.loads(out)


def test_lineage_of_a_step_run_both_ways(ran):
    project, result = ran
    total = result["steps"]["total"]
    out = project.cli("runs", "lineage", total["run_id"][:8]).stdout
    for text in ("total", "consumed", "load.output", "produced", "outputs/output.json", "load"):
        assert text in out
    data = json.loads(project.cli("runs", "lineage", total["run_id"], "--json").stdout)
    assert data["root"] == {"type": "run", "id": total["run_id"]}
    load_out = result["steps"]["load"]["outputs"]["output"]
    edges = {(e["run_id"], e["sha256"], e["direction"]) for e in data["edges"]}
    assert (total["run_id"], load_out, "input") in edges
    assert (result["steps"]["load"]["run_id"], load_out, "output") in edges


def test_upstream_only_and_downstream_only(ran):
    project, result = ran
    load_id = result["steps"]["load"]["run_id"]
    down = project.cli("runs", "lineage", load_id, "--downstream").stdout
    assert "produced" in down
    assert "total" in down
    up = project.cli("runs", "lineage", load_id, "--upstream").stdout
    assert "produced" not in up
    assert "total" not in up


def test_lineage_of_an_artifact_by_prefix(ran):
    project, result = ran
    sha = result["steps"]["load"]["outputs"]["output"]
    out = project.cli("runs", "lineage", f"sha256:{sha[:10]}").stdout
    assert "produced by" in out
    assert "consumed by" in out
    assert "load" in out
    assert "total" in out
    data = json.loads(project.cli("runs", "lineage", sha, "--json").stdout)
    assert data["root"] == {"type": "artifact", "id": sha}


def test_lineage_of_a_pipeline_run_shows_its_steps(ran):
    project, result = ran
    out = project.cli("runs", "lineage", result["run_id"]).stdout
    assert "training" in out
    assert "load" in out
    assert "total" in out


def test_cached_reuses_are_folded(ran):
    project, result = ran
    project.cli("run", "pipelines/training.py:training")
    sha = result["steps"]["load"]["outputs"]["output"]
    out = project.cli("runs", "lineage", sha).stdout
    assert "+1 cached reuse(s)" in out


def test_unknown_and_malformed_targets(ran):
    project, _ = ran
    for target, message in (
        ("ffffffffff", "no run id and no artifact sha256 starts with"),
        ("xyz", "at least 6 hex digits"),
    ):
        done = project.cli("runs", "lineage", target, ok=False)
        assert done.returncode == 1
        assert message in done.stderr
