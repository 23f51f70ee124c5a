from conveyor.runtime.cache import (
    CacheIndex,
    cache_key,
    canonical_params,
    outputs_tag,
    param_texts,
)
from conveyor.runtime.values import StoredOutput


def test_cache_key_depends_on_every_part():
    base = cache_key("code", {"x": "a" * 64}, '{"n":1}', ["output"])
    assert base == cache_key("code", {"x": "a" * 64}, '{"n":1}', ["output"])
    assert base != cache_key("code2", {"x": "a" * 64}, '{"n":1}', ["output"])
    assert base != cache_key("code", {"x": "b" * 64}, '{"n":1}', ["output"])
    assert base != cache_key("code", {"x": "a" * 64}, '{"n":2}', ["output"])
    assert base != cache_key("code", {"x": "a" * 64}, '{"n":1}', ["out"])


def test_canonical_params():
    from pathlib import Path

    assert canonical_params({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert canonical_params({"p": Path("x/y"), "s": {2, 1}}) == '{"p":"x/y","s":[1,2]}'
    assert canonical_params({"o": object()}) is None


def test_param_texts_are_short_text():
    texts = param_texts({"s": "x", "n": 1, "l": [1], "big": "y" * 10_000, "o": object()})
    assert texts["s"] == "x"
    assert texts["n"] == "1"
    assert texts["l"] == "[1]"
    assert len(texts["big"]) == 6000
    assert texts["o"].startswith("<object")


def test_lookup_finds_only_finished_runs_with_stored_outputs(tracker):
    digest = tracker.artifacts.put_bytes(b"1")
    stored = {"output": StoredOutput(digest.sha256, digest.size, "json")}
    tags = {"conveyor.cache_key": "k1", "conveyor.outputs": outputs_tag(stored)}
    index = CacheIndex(tracker.runs, tracker.artifacts)
    failed = tracker.start_run("e", tags=tags)
    failed.end("FAILED")
    assert index.lookup("k1", ["output"]) is None
    with tracker.start_run("e", tags=tags) as good:
        pass
    hit = index.lookup("k1", ["output"])
    assert hit is not None
    assert hit.run_id == good.id
    assert hit.outputs == stored
    assert index.lookup("k1", ["other"]) is None
    assert index.lookup("k2", ["output"]) is None
    tracker.artifacts.delete(digest.sha256)
    assert index.lookup("k1", ["output"]) is None  # its content is gone: a miss
