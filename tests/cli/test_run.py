import json


def run_json(project, *args):
    return json.loads(project.cli("run", *args, "--json").stdout)


def test_run_a_file_target_with_params_then_cached(pipeline_project):
    first = run_json(pipeline_project, "pipelines/training.py:training", "--param", "n=4")
    assert first["status"] == "FINISHED"
    assert set(first["steps"]) == {"load", "total"}
    assert not any(s["cached"] for s in first["steps"].values())
    assert len(first["steps"]["total"]["outputs"]["output"]) == 64
    again = run_json(pipeline_project, "pipelines/training.py:training", "-p", "n=4")
    assert all(s["cached"] for s in again["steps"].values())
    fresh = run_json(pipeline_project, "pipelines/training.py:training", "-p", "n=4", "--no-cache")
    assert not any(s["cached"] for s in fresh["steps"].values())


def test_run_a_module_target_into_an_experiment(pipeline_project):
    out = run_json(pipeline_project, "pipelines.training:training", "--experiment", "nightly")
    runs = json.loads(pipeline_project.cli("runs", "list", "-e", "nightly", "--json").stdout)
    assert out["run_id"] in {r["id"] for r in runs}
    assert len(runs) == 3


def test_table_output_names_steps_and_the_run(pipeline_project):
    done = pipeline_project.cli("run", "pipelines/training.py:training")
    for text in ("load", "total", "FINISHED", "run "):
        assert text in done.stdout
    assert "loading 5" in done.stdout


def test_a_failing_step_exits_1_with_one_line(pipeline_project):
    done = pipeline_project.cli("run", "pipelines/training.py:training", "-p", "scale=-1", ok=False)
    assert done.returncode == 1
    assert "step 'total' failed: ValueError: scale must not be negative" in done.stderr
    assert "Traceback" not in done.stderr
    assert "FAILED" in done.stdout
    resumed = run_json(pipeline_project, "pipelines/training.py:training")
    assert resumed["steps"]["load"]["cached"]


def test_resume_a_failed_run_without_cache(pipeline_project):
    failed = pipeline_project.cli(
        "run", "pipelines/training.py:training", "-p", "scale=-1", "--json", ok=False
    )
    run_id = json.loads(failed.stdout)["run_id"]
    out = run_json(
        pipeline_project, "pipelines/training.py:training", "--no-cache", "--resume", run_id[:8]
    )
    assert out["steps"]["load"]["cached"]
    assert not out["steps"]["total"]["cached"]


def test_bad_input_is_one_clear_line(pipeline_project):
    cases = {
        ("pipelines/training.py:training", "-p", "n=abc"): "cannot read 'abc' as int",
        ("pipelines/training.py:training", "-p", "zzz=1"): "has no such parameter",
        ("pipelines/training.py:training", "-p", "n"): "expected KEY=VALUE",
        ("pipelines/missing.py:training",): "no pipeline file",
        ("pipelines/training.py:nope",): "has no 'nope'; its pipelines: training",
        ("pipelines/training.py:load",): "is a Step, not a @pipeline",
        ("no_such_module:training",): "no module 'no_such_module'",
        ("training",): "give PATH.py:name or module:name",
    }
    for args, message in cases.items():
        done = pipeline_project.cli("run", *args, ok=False)
        assert done.returncode == 1, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
