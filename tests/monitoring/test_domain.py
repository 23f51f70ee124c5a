"""The domain classifier on generated data: no drift, a shift, a new category, bad input."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import ValidationError
from conveyor.monitoring import DomainReport, domain_classifier

ROWS = 5000


def _frame(seed: int, rows: int = ROWS, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(0, 1, rows),
            "b": rng.normal(0, 1, rows) + shift,
            "c": rng.integers(0, 10, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows),
        }
    )


def test_identical_distributions_are_not_drifted() -> None:
    report = domain_classifier(_frame(1), _frame(2))
    assert isinstance(report, DomainReport)
    assert report.roc_auc == pytest.approx(0.5, abs=0.05)
    assert not report.drifted
    assert report.rows_used == 2 * ROWS
    assert {name for name, _ in report.top_columns} == {"a", "b", "c", "city"}
    json.dumps(report.to_dict())


def test_a_shifted_column_is_found_first() -> None:
    report = domain_classifier(_frame(1), _frame(2, shift=1.0), seed=3)
    assert report.roc_auc > 0.7
    assert report.drifted
    assert report.top_columns[0][0] == "b"
    assert report.top_columns[0][1] > 0.1


def test_a_new_category_in_current_is_detected() -> None:
    ref, cur = _frame(1), _frame(2)
    cur.loc[: ROWS // 2, "city"] = "brest"
    report = domain_classifier(pa.Table.from_pandas(ref), cur)
    assert report.drifted
    assert report.top_columns[0][0] == "city"


def test_missing_values_are_fine() -> None:
    ref, cur = _frame(1), _frame(2)
    for frame in (ref, cur):
        frame.loc[::3, "a"] = np.nan
        frame.loc[::4, "city"] = None
        frame["empty"] = np.nan
    report = domain_classifier(ref, cur)
    assert report.roc_auc == pytest.approx(0.5, abs=0.05)
    missing = cur.copy()
    missing.loc[: ROWS // 2, "a"] = np.nan
    assert domain_classifier(ref, missing).top_columns[0][0] == "a"


def test_sampling_and_columns() -> None:
    report = domain_classifier(_frame(1), _frame(2, shift=1.0), columns=["a"], max_rows=1000)
    assert report.rows_used == 2000
    assert [name for name, _ in report.top_columns] == ["a"]
    assert not report.drifted


@pytest.mark.parametrize(
    ("reference", "current", "kwargs", "field"),
    [
        (_frame(1, rows=0), _frame(2), {}, "reference"),
        (_frame(1), _frame(2, rows=0), {}, "current"),
        (_frame(1), _frame(2).rename(columns=str.upper), {}, "columns"),
        (_frame(1), _frame(2).drop(columns="b"), {"columns": ["a", "b"]}, "b"),
        (_frame(1), _frame(2), {"columns": ["zz"]}, "zz"),
        (_frame(1), _frame(2).astype({"c": str}), {"columns": ["c"]}, "c"),
        (_frame(1), _frame(2), {"n_splits": 1}, "n_splits"),
        (_frame(1), _frame(2), {"threshold": 0.2}, "threshold"),
        ([1, 2], _frame(2), {}, "data"),
    ],
)
def test_bad_input_names_the_field(
    reference: object, current: object, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        domain_classifier(reference, current, **kwargs)  # type: ignore[arg-type]
    assert raised.value.field == field
