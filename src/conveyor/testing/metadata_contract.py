"""A contract every metadata backend passes: subclass it and override the ``store`` fixture.

class TestMyStore(MetadataStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        yield MyStore(...)
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from conveyor.core.entities import ArtifactRecord, LineageEdge, Metric, RunStatus, SourceVersion
from conveyor.errors import NotFoundError, ValidationError
from conveyor.stores.metadata.base import NewRun, RunStore, WriteBatch

__all__ = ["MetadataStoreContract"]


def _new_run(store: RunStore, experiment: str = "contract", **kw: object) -> NewRun:
    exp = store.get_or_create_experiment(experiment)
    run = NewRun(
        id=uuid.uuid4().hex,
        experiment_id=exp.id,
        name=str(kw.get("name", "r")),
        start_time=int(kw.get("start_time", time.time() * 1000)),  # type: ignore[call-overload]
        parent_run_id=kw.get("parent_run_id"),  # type: ignore[arg-type]
        source=SourceVersion("abc123", None),
        tags=dict(kw.get("tags", {})),  # type: ignore[call-overload]
    )
    store.create_run(run)
    return run


class MetadataStoreContract:
    """The behaviour conveyor relies on from any `RunStore`."""

    @pytest.fixture
    def store(self) -> Iterator[RunStore]:
        """A fresh, empty store; override this."""
        raise NotImplementedError("override the `store` fixture")

    def test_experiments_are_created_once(self, store: RunStore) -> None:
        a = store.get_or_create_experiment("exp")
        b = store.get_or_create_experiment("exp")
        assert a == b
        assert [e.name for e in store.list_experiments()] == ["exp"]

    def test_unknown_experiment_lists_known(self, store: RunStore) -> None:
        store.get_or_create_experiment("known")
        with pytest.raises(NotFoundError, match="known"):
            store.get_experiment("missing")

    def test_concurrent_experiment_creation(self, store: RunStore) -> None:
        results: list[int] = []

        def create() -> None:
            results.append(store.get_or_create_experiment("race").id)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(set(results)) == 1

    def test_run_round_trip(self, store: RunStore) -> None:
        run = _new_run(store, name="baseline", tags={"team": "ops"})
        got = store.get_run(run.id)
        assert got.status is RunStatus.RUNNING
        assert got.name == "baseline"
        assert got.tags == {"team": "ops"}
        assert got.source.git_sha == "abc123"
        assert got.heartbeat_at == run.start_time

    def test_missing_run(self, store: RunStore) -> None:
        with pytest.raises(NotFoundError):
            store.get_run("0" * 32)

    def test_batch_write_and_latest_metric(self, store: RunStore) -> None:
        run = _new_run(store)
        batch = WriteBatch(
            metrics=[
                (run.id, "loss", 1.0, 0, 10),
                (run.id, "loss", 0.5, 2, 11),
                (run.id, "loss", 0.7, 1, 12),
            ],
            params=[(run.id, "lr", "0.1")],
            tags=[(run.id, "stage", "dev")],
        )
        store.write(batch)
        got = store.get_run(run.id)
        assert got.metrics == {"loss": 0.5}  # highest step wins, not the last written
        assert got.params == {"lr": "0.1"}
        assert got.tags == {"stage": "dev"}
        assert [m.step for m in store.metric_history(run.id, "loss")] == [0, 1, 2]

    def test_latest_metric_across_batches(self, store: RunStore) -> None:
        run = _new_run(store)
        store.write(WriteBatch(metrics=[(run.id, "acc", 0.9, 5, 10)]))
        store.write(WriteBatch(metrics=[(run.id, "acc", 0.1, 3, 20)]))  # an older step
        assert store.get_run(run.id).metrics["acc"] == 0.9
        store.write(WriteBatch(metrics=[(run.id, "acc", 0.95, 5, 30)]))  # same step, later
        assert store.get_run(run.id).metrics["acc"] == 0.95

    def test_nan_and_infinities_survive(self, store: RunStore) -> None:
        run = _new_run(store)
        rows = [
            (run.id, "x", math.nan, 0, 1),
            (run.id, "x", math.inf, 1, 2),
            (run.id, "x", -math.inf, 2, 3),
        ]
        store.write(WriteBatch(metrics=rows))
        values = [m.value for m in store.metric_history(run.id, "x")]
        assert math.isnan(values[0])
        assert values[1:] == [math.inf, -math.inf]

    def test_params_are_immutable_tags_are_not(self, store: RunStore) -> None:
        run = _new_run(store)
        store.write(WriteBatch(params=[(run.id, "p", "1")], tags=[(run.id, "t", "1")]))
        store.write(WriteBatch(params=[(run.id, "p", "2")], tags=[(run.id, "t", "2")]))
        got = store.get_run(run.id)
        assert got.params["p"] == "1"
        assert got.tags["t"] == "2"

    def test_end_and_heartbeat(self, store: RunStore) -> None:
        run = _new_run(store)
        store.write(WriteBatch(heartbeats=[(run.id, run.start_time + 1000)]))
        assert store.get_run(run.id).heartbeat_at == run.start_time + 1000
        store.write(WriteBatch(ends=[(run.id, RunStatus.FINISHED, run.start_time + 2000)]))
        got = store.get_run(run.id)
        assert got.status is RunStatus.FINISHED
        assert got.duration_ms == 2000

    def test_reap_marks_only_stale_runs(self, store: RunStore) -> None:
        now = int(time.time() * 1000)
        stale = _new_run(store, start_time=now - 60_000)
        fresh = _new_run(store, start_time=now)
        assert store.reap(grace_ms=30_000, now_ms=now) == [stale.id]
        assert store.get_run(stale.id).status is RunStatus.FAILED
        assert store.get_run(fresh.id).status is RunStatus.RUNNING
        assert store.reap(grace_ms=30_000, now_ms=now) == []

    def test_artifacts(self, store: RunStore) -> None:
        run = _new_run(store)
        digest = "a" * 64
        records = [
            ArtifactRecord(run.id, "plots/roc.png", digest, 10, "image/png", 1),
            ArtifactRecord(run.id, "model.json", "b" * 64, 20, "application/json", 1),
        ]
        store.add_artifacts(records)
        assert [a.path for a in store.list_artifacts(run.id)] == ["model.json", "plots/roc.png"]
        assert [a.path for a in store.list_artifacts(run.id, "plots/")] == ["plots/roc.png"]
        assert store.get_artifact(run.id, "model.json").size == 20
        with pytest.raises(NotFoundError, match=r"model\.json"):
            store.get_artifact(run.id, "nope.txt")
        assert digest in store.referenced_digests()
        assert [a.path for a in store.get_run(run.id).artifacts] == ["model.json", "plots/roc.png"]

    def test_prefix_with_wildcards_is_literal(self, store: RunStore) -> None:
        run = _new_run(store)
        store.add_artifacts(
            [
                ArtifactRecord(run.id, "a_b/x", "c" * 64, 1, "text/plain", 1),
                ArtifactRecord(run.id, "aXb/y", "d" * 64, 1, "text/plain", 1),
            ]
        )
        assert [a.path for a in store.list_artifacts(run.id, "a_b/")] == ["a_b/x"]

    def test_lineage(self, store: RunStore) -> None:
        producer = _new_run(store)
        consumer = _new_run(store)
        digest = "e" * 64
        store.add_lineage([LineageEdge(producer.id, digest, "output", "data.parquet")])
        store.add_lineage([LineageEdge(consumer.id, digest, "input", "data")] * 2)
        edges = store.lineage_of_artifact(digest)
        assert {(e.run_id, e.direction) for e in edges} == {
            (producer.id, "output"),
            (consumer.id, "input"),
        }
        assert len(edges) == 2
        assert store.lineage_of_run(consumer.id)[0].sha256 == digest
        with pytest.raises(ValidationError):
            store.add_lineage([LineageEdge(consumer.id, digest, "sideways")])

    def test_search_filters_and_orders(self, store: RunStore) -> None:
        ids = []
        for i in range(5):
            run = _new_run(store, experiment="search", start_time=1000 + i)
            store.write(
                WriteBatch(
                    metrics=[(run.id, "auc", i / 10, 0, 1)], params=[(run.id, "lr", str(i % 2))]
                )
            )
            ids.append(run.id)
        exp = store.get_experiment("search").id
        found = store.search_runs(
            [exp], "metrics.auc > 0.15 and params.lr = '1'", ["metrics.auc DESC"]
        )
        assert [r.id for r in found] == [ids[3]]
        assert [r.id for r in store.search_runs([exp])] == ids[::-1]
        page = store.search_runs([exp], order_by=["metrics.auc ASC"], max_results=2, offset=1)
        assert [r.id for r in page] == ids[1:3]

    def test_history_of_many_points(self, store: RunStore) -> None:
        run = _new_run(store)
        rows = [(run.id, "loss", float(i), i, i) for i in range(20_000)]
        store.write(WriteBatch(metrics=rows))
        history = store.metric_history(run.id, "loss")
        assert len(history) == 20_000
        assert history[-1] == Metric("loss", 19_999.0, 19_999, 19_999)

    def test_info(self, store: RunStore) -> None:
        _new_run(store)
        info = store.info()
        assert info["rows"]["runs"] == 1
        assert "password" not in str(info["url"]).lower()
