import math

import pytest

from conveyor.core.entities import RunStatus
from conveyor.errors import NotFoundError, StateError, UnsafePathError, ValidationError
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.store import SqlMetadataStore
from conveyor.tracking.tracker import Tracker


@pytest.fixture
def tracker(tmp_path):
    t = Tracker(
        SqlMetadataStore(f"sqlite:///{tmp_path / 'c.db'}"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()


def test_run_lifecycle(tracker):
    with tracker.start_run("exp", "first", tags={"team": "ops"}) as run:
        run.log_params({"max_depth": 6, "lr": 0.1})
        run.log_metric("loss", 0.5, step=1)
        run.log_metrics({"auc": 0.9, "f1": 0.6}, step=1)
        run.set_tag("stage", "dev")
    got = tracker.get_run(run.id)
    assert got.status is RunStatus.FINISHED
    assert got.params == {"max_depth": "6", "lr": "0.1"}
    assert got.metrics == {"loss": 0.5, "auc": 0.9, "f1": 0.6}
    assert got.tags == {"team": "ops", "stage": "dev"}
    assert got.end_time is not None


def test_exception_marks_failed_and_interrupt_killed(tracker):
    with pytest.raises(ZeroDivisionError), tracker.start_run("exp") as failing:
        1 / 0  # noqa: B018
    assert tracker.get_run(failing.id).status is RunStatus.FAILED
    with pytest.raises(KeyboardInterrupt), tracker.start_run("exp") as interrupted:
        raise KeyboardInterrupt
    assert tracker.get_run(interrupted.id).status is RunStatus.KILLED


def test_bad_input_names_the_field(tracker):
    with tracker.start_run("exp") as run:
        with pytest.raises(ValidationError, match=r"metric 'loss'.*number"):
            run.log_metric("loss", "not a number")
        with pytest.raises(ValidationError, match="metric key"):
            run.log_metric("", 1.0)
        with pytest.raises(ValidationError, match="metric key"):
            run.log_metric("x" * 300, 1.0)
        run.log_param("lr", 0.1)
        with pytest.raises(ValidationError, match=r"param 'lr'.*cannot change"):
            run.log_param("lr", 0.2)
        run.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(ValidationError, match="limit"):
            run.log_param("big", "x" * 10_000)
    assert tracker.get_run(run.id).params == {"lr": "0.1"}


def test_logging_after_end_is_refused(tracker):
    run = tracker.start_run("exp")
    run.end()
    with pytest.raises(StateError, match="ended"):
        run.log_metric("m", 1.0)
    run.end()  # ending twice is harmless


def test_end_without_flush_is_durable_at_the_next_flush(tracker):
    run = tracker.start_run("exp")
    run.end(RunStatus.FAILED, flush=False)
    assert run.status is RunStatus.FAILED
    tracker.flush()
    assert tracker.runs.get_run(run.id).status is RunStatus.FAILED


def test_nan_metric_is_kept(tracker):
    with tracker.start_run("exp") as run:
        run.log_metric("loss", math.nan)
    assert math.isnan(tracker.get_run(run.id).metrics["loss"])


def test_artifacts_file_and_folder(tracker, tmp_path):
    (tmp_path / "confusion.png").write_bytes(b"\x89PNG fake")
    plots = tmp_path / "plots"
    (plots / "sub").mkdir(parents=True)
    (plots / "roc.svg").write_text("<svg/>")
    (plots / "sub" / "pr.svg").write_text("<svg></svg>")
    with tracker.start_run("exp") as run:
        run.log_artifact(tmp_path / "confusion.png")
        run.log_artifact(plots)
        run.log_artifact(tmp_path / "confusion.png", artifact_path="copies")
    paths = [a.path for a in tracker.get_run(run.id).artifacts]
    assert paths == ["confusion.png", "copies/confusion.png", "plots/roc.svg", "plots/sub/pr.svg"]
    png = tracker.download_artifact(run.id, "confusion.png", tmp_path / "out")
    assert png.read_bytes() == b"\x89PNG fake"
    folder = tracker.download_artifact(run.id, "plots", tmp_path / "out2")
    assert (folder / "sub" / "pr.svg").read_text() == "<svg></svg>"
    # the same bytes are stored once
    digests = {a.sha256 for a in tracker.get_run(run.id).artifacts}
    assert len(digests) == 4 - 1
    edges = tracker.runs.lineage_of_run(run.id)
    assert {e.direction for e in edges} == {"output"}


def test_download_errors(tracker, tmp_path):
    with tracker.start_run("exp") as run:
        pass
    with pytest.raises(NotFoundError, match="has no artifact"):
        tracker.download_artifact(run.id, "nope.txt", tmp_path)
    with pytest.raises(UnsafePathError):
        tracker.download_artifact(run.id, "../../etc/passwd", tmp_path)


def test_search_by_experiment_name(tracker):
    for auc in (0.7, 0.9):
        with tracker.start_run("flights") as run:
            run.log_metric("auc", auc)
    with tracker.start_run("other") as run:
        run.log_metric("auc", 0.99)
    found = tracker.search_runs("flights", "metrics.auc > 0.8")
    assert [r.metrics["auc"] for r in found] == [0.9]
    frame = tracker.search_runs(["flights", "other"], order_by=["metrics.auc DESC"], as_frame=True)
    assert list(frame["metrics.auc"]) == [0.99, 0.9, 0.7]
    with pytest.raises(NotFoundError, match="flights"):
        tracker.search_runs("missing")


def test_nested_runs_record_their_parent(tracker):
    with (
        tracker.start_run("exp") as parent,
        tracker.start_run("exp", parent_run_id=parent.id) as child,
    ):
        pass
    assert tracker.get_run(child.id).parent_run_id == parent.id


def test_log_bytes_and_attach_record_lineage(tracker):
    with tracker.start_run("exp") as producer:
        record = producer.log_bytes(b"step log\n", "logs/step.txt")
        assert record.media_type == "text/plain"
    digest = tracker.artifacts.put_bytes(b"[1, 2, 3]")
    with tracker.start_run("exp") as consumer:
        consumer.log_input(record.sha256, "upstream log")
        [attached] = consumer.attach([("outputs/values.json", digest)])
    assert attached.size == len(b"[1, 2, 3]")
    assert (
        tracker.artifacts.get_bytes(tracker.get_run(producer.id).artifacts[0].sha256)
        == b"step log\n"
    )
    edges = {(e.run_id, e.direction) for e in tracker.runs.lineage_of_artifact(record.sha256)}
    assert edges == {(producer.id, "output"), (consumer.id, "input")}
    assert [a.path for a in tracker.list_artifacts(consumer.id)] == ["outputs/values.json"]
