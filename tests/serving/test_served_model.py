"""`ServedModel`: a lone request is not held back; a failed load keeps the old version."""

import asyncio
import time

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
