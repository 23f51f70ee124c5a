"""``conveyor feedback``: labels from a file written to the capture log, joined by request id."""

import pandas as pd

from conveyor.stores.backends import open_artifact_store
from conveyor.stores.capture import read_feedback


def _store(project):
    return open_artifact_store(str(project.root / ".conveyor" / "artifacts")).byte_store


def test_feedback_from_csv_and_parquet(project):
    labels = pd.DataFrame({"rid": ["a", "b", "c"], "late": [1, 0, 1]})
    labels.to_csv(project.root / "labels.csv", index=False)
    done = project.cli(
        "feedback",
        "flights",
        "--file",
        "labels.csv",
        "--id-column",
        "rid",
        "--label-column",
        "late",
    )
    assert "3 labels for flights written in 1 file(s)" in done.stdout
    pd.DataFrame({"request_id": ["a"], "label": [0], "row": [2]}).to_parquet(
        project.root / "more.parquet"
    )
    project.cli("feedback", "flights", "--file", "more.parquet", "--row-column", "row")
    table = read_feedback(_store(project), "flights").to_pylist()
    got = {(r["request_id"], r["row"]): r["label"] for r in table}
    assert got == {("a", 0): 1, ("b", 0): 0, ("c", 0): 1, ("a", 2): 0}


def test_feedback_errors_are_one_line_naming_the_field(project):
    pd.DataFrame({"request_id": ["a", "b", "c"], "label": [1, None, 0]}).to_csv(
        project.root / "nulls.csv", index=False
    )
    done = project.cli("feedback", "flights", "--file", "nulls.csv", ok=False)
    assert done.returncode == 1
    assert "label" in done.stderr
    assert "row 2" in done.stderr
    assert "Traceback" not in done.stderr
    done = project.cli(
        "feedback", "flights", "--file", "nulls.csv", "--label-column", "y", ok=False
    )
    assert "--label-column" in done.stderr
    assert "no column 'y'" in done.stderr
    (project.root / "labels.json").write_text("{}")
    done = project.cli("feedback", "flights", "--file", "labels.json", ok=False)
    assert ".parquet or .csv" in done.stderr
    assert read_feedback(_store(project), "flights").num_rows == 0
