import pandas as pd
import pytest

from conveyor.core.step import step
from conveyor.errors import ValidationError
from conveyor.runtime.serializers import PICKLE
from conveyor.runtime.values import StoredOutput, Value, materialize


@step
def plain() -> object:
    return None


@step(allow_pickle=True)
def trusting() -> object:
    return None


def test_materialize_stores_once_and_reuses_unchanged_inputs(tracker):
    cas = tracker.artifacts
    df = pd.DataFrame({"x": [1.0, 2.0]})
    made = materialize(df, plain, "make", "output", [], cas)
    assert made.loaded
    assert made.stored.serializer == "pandas.parquet"
    assert cas.exists(made.stored.sha256)
    passed = materialize(df, plain, "same", "output", [made], cas)
    assert passed.stored == made.stored
    df.loc[0, "x"] = 9.0
    changed = materialize(df, plain, "mutate", "output", [made], cas)
    assert changed.stored != made.stored


def test_lazy_values_load_once_verified(tracker):
    cas = tracker.artifacts
    made = materialize({"a": [1, 2]}, plain, "make", "output", [], cas)
    lazy = Value(made.stored, cas)
    assert not lazy.loaded
    assert lazy.get() == {"a": [1, 2]}
    assert lazy.loaded
    assert lazy.get() is lazy.get()


def test_a_stored_pickle_is_read_only_for_a_step_that_opted_in(tracker):
    cas = tracker.artifacts
    digest = cas.put_bytes(PICKLE.dump({"model": 1}))
    stored = StoredOutput(digest.sha256, digest.size, "pickle")
    with pytest.raises(ValidationError, match="allow_pickle=True"):
        Value(stored, cas).get()
    assert Value(stored, cas, allow_pickle=True).get() == {"model": 1}


def test_unsupported_and_failing_outputs_name_step_and_output(tracker):
    with pytest.raises(ValidationError, match="step 'make' output 'output': no serializer"):
        materialize(object(), plain, "make", "output", [], tracker.artifacts)
    pickled = materialize(object, trusting, "t", "output", [], tracker.artifacts)
    assert pickled.stored.serializer == "pickle"
    mixed = pd.DataFrame({"x": [1, "a"]})
    with pytest.raises(ValidationError, match=r"could not be written with the pandas\.parquet"):
        materialize(mixed, plain, "make", "table", [], tracker.artifacts)
