import math

import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.monitoring.samples import (
    OTHER,
    categorical_sample,
    numeric_sample,
    profile_categorical_sample,
    profile_numeric_sample,
)
from conveyor.profiling.profile import profile
from conveyor.profiling.tables import Column


def test_numeric_sample_sorts_finite_values_and_counts_the_rest():
    numbers = np.array([3.0, np.nan, 1.0, np.inf, -np.inf, 2.0, 1.0])
    sample = numeric_sample(Column("x", "numeric", numbers=numbers))
    np.testing.assert_array_equal(sample.values, [1.0, 1.0, 2.0, 3.0])
    assert (sample.count, sample.nulls, sample.infinite) == (4, 1, 2)
    assert (sample.minimum, sample.maximum) == (1.0, 3.0)
    assert sample.std == np.std([1.0, 1.0, 2.0, 3.0])
    assert sample.distinct == 3
    values, counts = sample.value_counts()
    assert values.tolist() == [1.0, 2.0, 3.0]
    assert counts.tolist() == [2, 1, 1]
    assert np.isnan(numbers[1])  # the input is left alone


def test_an_all_missing_column_is_an_empty_sample():
    sample = numeric_sample(Column("x", "numeric", numbers=np.array([np.nan, np.nan])))
    assert sample.count == 0
    assert sample.nulls == 2
    assert math.isnan(sample.std)
    assert sample.distinct == 0


def test_categorical_sample_counts_without_nulls():
    sample = categorical_sample(
        Column("c", "categorical", strings=pa.chunked_array([["a", None, "a"]]))
    )
    assert sample.values.to_pylist() == ["a"]
    assert sample.counts.tolist() == [2]
    assert (sample.count, sample.nulls, sample.exact) == (2, 1, True)


def test_profile_samples_are_exact_while_the_profile_keeps_every_value():
    frame = pd.DataFrame({"x": [1.0, 2.0, 2.0, np.nan], "few": [1.0, 1.0, 2.0, 2.0]})
    prof = profile(frame)
    x = profile_numeric_sample(prof["x"])
    assert x.exact
    assert x.weights is not None  # an exact value table: values with their counts
    assert x.values.tolist() == [1.0, 2.0]
    assert x.weights.tolist() == [1, 2]
    assert (x.count, x.nulls) == (3, 1)


def test_profile_samples_fall_back_to_the_sketch():
    values = np.random.default_rng(0).normal(size=20_000)
    prof = profile(pd.DataFrame({"x": values}), k=64)
    sample = profile_numeric_sample(prof["x"])
    assert not sample.exact
    assert sample.weights is not None
    assert int(sample.weights.sum()) == 20_000
    assert math.isclose(sample.std, np.std(values), rel_tol=1e-12)
    assert sample.distinct > 19_000


def test_profile_categories_beyond_capacity_are_lumped_as_other():
    words = [f"w{i % 40}" for i in range(400)] + ["top"] * 300
    prof = profile(pd.DataFrame({"c": words}), top_capacity=5)
    sample = profile_categorical_sample(prof["c"])
    assert not sample.exact
    assert sample.values.to_pylist()[0] == "top"
    assert sample.values.to_pylist()[-1] == OTHER
    assert int(sample.counts.sum()) == sample.count == 700
