import json


def test_list_table_and_json(project):
    out = project.cli("runs", "list").stdout
    assert "2 run(s)" in out
    assert "FINISHED" in out
    data = json.loads(project.cli("runs", "list", "--json").stdout)
    assert {r["id"] for r in data} == set(project.run_ids)


def test_list_filter_and_order(project):
    data = json.loads(
        project.cli("runs", "list", "-e", "flights", "-f", "metrics.auc > 0.8", "--json").stdout
    )
    assert [r["id"] for r in data] == [project.run_ids[1]]
    ordered = json.loads(project.cli("runs", "list", "-o", "metrics.auc ASC", "--json").stdout)
    assert [r["id"] for r in ordered] == project.run_ids


def test_bad_filter_points_at_the_token(project):
    done = project.cli("runs", "list", "-f", "metrics.auc >> 1", ok=False)
    assert done.returncode == 1
    assert "position" in done.stderr
    assert "^" in done.stderr


def test_show_by_prefix(project):
    run_id = project.run_ids[0]
    out = project.cli("runs", "show", run_id[:8]).stdout
    for text in (run_id, "params", "lr", "auc", "reports/report.txt"):
        assert text in out
    data = json.loads(project.cli("runs", "show", run_id, "--json").stdout)
    assert data["metrics"] == {"auc": 0.71, "f1": 0.5}


def test_short_prefix_is_refused(project):
    done = project.cli("runs", "show", "ab", ok=False)
    assert "at least 6 characters" in done.stderr


def test_compare_highlights_differences(project):
    out = project.cli("runs", "compare", *project.run_ids).stdout
    assert "metrics.auc" in out
    assert "params.lr" in out
    data = json.loads(project.cli("runs", "compare", *project.run_ids, "--json").stdout)
    assert [d["params"]["depth"] for d in data] == ["6", "6"]


def test_reap(project):
    out = project.cli("runs", "reap").stdout
    assert "0 run(s) marked FAILED" in out
