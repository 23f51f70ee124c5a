"""`ServedModel`: requests that arrive together share a batch; a lone one is not held back."""

import asyncio
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from conveyor.serving.errors import HTTPProblem
from conveyor.serving.fastpath import rows_array
from conveyor.serving.metrics import Metrics
from conveyor.serving.model import ServedModel


def test_lone_request_does_not_wait_the_window(registry, data, make_model):
    X, _ = data
    registry.register_model("m", make_model(data), X.head(10))

    async def go():
        served = ServedModel(registry, "m/1", Metrics(dict), batch_wait_ms=500)
        await served.start()
        await served.predict(served.validate(X.head(1)))  # warm up
        started = time.perf_counter()
        result = await served.predict(served.validate(X.head(3)))
        elapsed = time.perf_counter() - started
        await served.stop()
        return result, elapsed

    result, elapsed = asyncio.run(go())
    assert elapsed < 0.4
    assert result.version == "m/1"
    assert len(result.predict) == 3


def test_failed_load_keeps_the_old_version(registry, data, make_model, monkeypatch):
    X, _ = data
    registry.register_model("m", make_model(data), X.head(10))
    registry.register_model("m", make_model(data, c=0.01), X.head(10))
    registry.set_alias("m", "production", 1)

    async def go():
        served = ServedModel(registry, "m@production", Metrics(dict), poll_seconds=60)
        await served.start()
        registry.set_alias("m", "production", 2)

        def broken(ref):
            raise OSError("disk gone")

        monkeypatch.setattr(registry, "load_model", broken)
        swapped = await served.refresh()
        after_failure = served.version_label
        monkeypatch.undo()
        swapped_again = await served.refresh()
        await served.stop()
        return swapped, after_failure, swapped_again, served.version_label

    assert asyncio.run(go()) == (False, "m/1", True, "m/2")


def _batches(metrics: Metrics) -> int:
    line = next(
        x for x in metrics.render().splitlines() if x.startswith("conveyor_batch_size_count")
    )
    return int(line.rsplit(" ", 1)[1])


def test_requests_that_arrive_together_share_one_batch(registry, data, make_model):
    X, _ = data
    model = make_model(data)
    registry.register_model("m", model, X.head(10))

    async def go(wait_ms, in_thread):
        metrics = Metrics(dict)
        served = ServedModel(registry, "m/1", metrics, batch_wait_ms=wait_ms)
        served.predictor.inline = not in_thread
        await served.start()
        rows = [served.validate(X.iloc[[i]]) for i in range(8)]
        results = await asyncio.gather(*(served.predict(r) for r in rows))
        await served.stop()
        return [int(r.predict[0]) for r in results], _batches(metrics), served.queue_depth

    expected = model.predict(X.head(8)).tolist()
    assert asyncio.run(go(2.0, False)) == (expected, 1, 0)
    assert asyncio.run(go(2.0, True)) == (expected, 1, 0)
    assert asyncio.run(go(0, False)) == (expected, 8, 0)


def test_a_bad_request_in_a_batch_fails_alone(registry, data, make_model):
    X, _ = data
    registry.register_model("m", make_model(data), X.head(10))
    broken = X.head(1).copy()
    broken["mean radius"] = "not a number"  # past validation: only the model can refuse it

    async def go():
        served = ServedModel(registry, "m/1", Metrics(dict))
        await served.start()
        good = served.validate(X.head(2))
        answers = await asyncio.gather(
            served.predict(good), served.predict(broken), return_exceptions=True
        )
        await served.stop()
        return answers

    ok, bad = asyncio.run(go())
    assert len(ok.predict) == 2
    assert isinstance(bad, HTTPProblem)
    assert bad.status == 422


def test_the_others_are_answered_when_the_leader_is_cancelled(registry, data, make_model):
    X, _ = data
    registry.register_model("m", make_model(data), X.head(10))

    async def go():
        served = ServedModel(registry, "m/1", Metrics(dict))
        await served.start()
        leader = asyncio.ensure_future(served.predict(served.validate(X.head(1))))
        other = asyncio.ensure_future(served.predict(served.validate(X.head(2))))
        await asyncio.sleep(0)  # the leader gathers; the other joins its batch
        leader.cancel()
        result = await asyncio.wait_for(other, 5)
        await served.stop()
        return leader.cancelled(), len(result.predict)

    assert asyncio.run(go()) == (True, 2)


def test_answers_of_one_batch_point_to_its_rows_and_where_theirs_start(registry):
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = (X["a"] > X["b"]).astype(int)
    registry.register_model("lean", LogisticRegression().fit(X, y), X.head(10))

    spans = ((0, 1), (1, 3), (4, 2))

    async def go():
        served = ServedModel(registry, "lean/1", Metrics(dict))
        await served.start()
        signature = served.current.signature
        parsed = [rows_array(X.iloc[i : i + n].values.tolist(), signature) for i, n in spans]
        rows = [served.validate(p) for p in parsed]  # as a JSON body is parsed: arrays
        results = await asyncio.gather(*(served.predict(r, proba=True) for r in rows))
        await served.stop()
        return rows, results

    rows, results = asyncio.run(go())
    batch = results[0].batch
    assert batch is not None
    assert all(r.batch is batch for r in results)  # arrived together: one batch
    assert [r.start for r in results] == [0, 1, 4]
    np.testing.assert_array_equal(batch.rows, np.concatenate(rows))
    for r in results:
        end = r.start + len(r.predict)
        np.testing.assert_array_equal(batch.predict[r.start : end], r.predict)
        assert batch.proba is not None
        assert r.proba is not None
        np.testing.assert_array_equal(batch.proba[r.start : end], r.proba)
