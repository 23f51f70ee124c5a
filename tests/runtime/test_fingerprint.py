import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.runtime.fingerprint import fingerprint


def test_dataframe_changes_are_seen():
    df = pd.DataFrame(np.random.default_rng(0).random((1000, 3)), columns=list("abc"))
    before = fingerprint(df)
    assert before is not None
    assert fingerprint(df) == before
    df.iloc[500, 1] = 0.5
    assert fingerprint(df) != before
    renamed = df.rename(columns={"a": "z"})
    assert fingerprint(renamed) != fingerprint(df)
    assert fingerprint(df.set_index("a")) is not None


def test_arrays_tables_and_unknown_values():
    array = np.arange(10)
    assert fingerprint(array) == fingerprint(np.arange(10))
    assert fingerprint(array) != fingerprint(np.arange(10).reshape(2, 5))
    assert fingerprint(array[::2]) is None  # not contiguous: no cheap fingerprint
    assert fingerprint(np.array([object()])) is None
    table = pa.table({"a": [1, 2, 3]})
    assert fingerprint(table) == fingerprint(pa.table({"a": [1, 2, 3]}))
    assert fingerprint(table) != fingerprint(pa.table({"a": [1, 2, 4]}))
    assert fingerprint({"a": 1}) is None
    assert fingerprint(pd.DataFrame({"s": ["x", "y"]}).astype(object)) is None
