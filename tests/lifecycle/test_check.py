import numpy as np
import pandas as pd
import pytest

from conveyor.lifecycle import ColumnSchema, Dataset, Schema, analyze, check, load_flights
from conveyor.lifecycle._check import conforms


def reference() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 27, 60, 38],
            "fare": [7.25, 71.3, 8.05, 53.1, 8.46],
            "port": ["S", "C", "S", "Q", "S"],
            "cabin": ["C85", None, None, "C123", None],
            "alive": [True, False, True, True, False],
            "when": pd.to_datetime([f"2020-01-0{d}" for d in range(1, 6)]),
        }
    )


@pytest.fixture
def schema() -> Schema:
    return analyze(reference(), max_categories=3)[1]


def only(report, rule):
    found = [a for a in report.anomalies if a.rule == rule]
    assert len(found) == 1, report
    return found[0]


def test_the_data_a_schema_came_from_meets_it(schema):
    report = check(reference(), schema)
    assert report.ok
    assert report.anomalies == []
    assert report.rows == 5
    assert check(Dataset.of(reference(), "mem"), schema).ok


def test_missing_column(schema):
    report = check(reference().drop(columns="fare"), schema)
    anomaly = only(report, "missing_column")
    assert (anomaly.column, anomaly.severity, anomaly.count) == ("fare", "fail", 0)
    assert not report.ok


def test_extra_column_shows_some_values(schema):
    report = check(reference().assign(extra=[1, 2, 2, 3, 4]), schema)
    anomaly = only(report, "extra_column")
    assert (anomaly.column, anomaly.severity, anomaly.examples) == ("extra", "warn", [1, 2, 3, 4])
    assert report.ok  # a warning


def test_type_change_of_a_whole_column(schema):
    report = check(reference().assign(age=["31", "x", "27", "60", "38"]), schema)
    anomaly = only(report, "type_change")
    assert (anomaly.column, anomaly.severity, anomaly.count) == ("age", "fail", 5)
    assert anomaly.examples == ["31", "x", "27", "60", "38"]
    assert "dtype str where int is expected" in anomaly.message


def test_whole_floats_fit_an_int_column_but_fractions_do_not(schema):
    with_gap = reference().assign(age=[31.0, np.nan, 27.0, 60.0, 38.0])
    report = check(with_gap, schema)
    assert [a.rule for a in report.anomalies] == ["required_nulls"]
    fractional = check(reference().assign(age=[31.5, 45.0, 27.25, 60.0, 38.0]), schema)
    anomaly = only(fractional, "type_change")
    assert (anomaly.count, anomaly.examples) == (2, [31.5, 27.25])


@pytest.mark.parametrize(
    ("kind", "series", "fits"),
    [
        ("float", pd.Series([1, 2]), True),
        ("float", pd.Series([True, False]), False),
        ("int", pd.Series([True, False]), False),
        ("int", pd.array([1, None], dtype="Int64"), True),
        ("bool", pd.Series([True, None], dtype=object), True),
        ("bool", pd.Series([1, 0]), False),
        ("datetime", pd.Series(pd.to_datetime(["2020-01-01"], utc=True)), True),
        ("datetime", pd.Series(["2020-01-01"]), False),
        ("category", pd.Series(pd.Categorical(["a"])), True),
        ("string", pd.Series(["a", 1], dtype=object), True),
        ("string", pd.Series([1, 2], dtype=object), False),
        ("string", pd.Series([1.5]), False),
    ],
)
def test_types_that_conform(kind, series, fits):
    assert conforms(pd.Series(series), kind)[0] is fits


def test_out_of_range_counts_and_shows_the_offenders(schema):
    fares = [7.25, -1.0, 900.0, 900.0, np.inf]
    report = check(reference().assign(fare=fares), schema)
    anomaly = only(report, "out_of_range")
    assert (anomaly.column, anomaly.count, anomaly.severity) == ("fare", 4, "warn")
    assert anomaly.examples == [-1.0, 900.0, "inf"]
    assert "outside [7.25, 71.3]" in anomaly.message


def test_unseen_category(schema):
    report = check(reference().assign(port=["S", "X", None, "Y", "X"]), schema)
    anomaly = only(report, "unseen_category")
    assert (anomaly.column, anomaly.count, anomaly.examples) == ("port", 3, ["X", "Y"])
    assert [a.rule for a in report.anomalies if a.column == "port"] == [
        "required_nulls",
        "unseen_category",
    ]


def test_categories_are_compared_as_text():
    schema = Schema({"code": ColumnSchema("category", categories=["1", "2"])})
    frame = pd.DataFrame({"code": pd.Categorical([1, 2, 3])})
    assert only(check(frame, schema), "unseen_category").examples == ["3"]


def test_required_nulls_name_the_rows(schema):
    report = check(reference().assign(alive=[True, None, True, None, False]), schema)
    anomaly = only(report, "required_nulls")
    assert (anomaly.column, anomaly.count, anomaly.examples, anomaly.severity) == (
        "alive",
        2,
        [1, 3],
        "fail",
    )


def test_null_rate_jump_beyond_the_tolerance(schema):
    assert schema["cabin"].null_rate == 0.6
    assert not schema["cabin"].required
    cabins = ["C85", None, None, None, None]  # 0.8, above 0.6 + 0.1
    anomaly = only(check(reference().assign(cabin=cabins), schema), "null_rate_jump")
    assert (anomaly.count, anomaly.examples) == (4, [1, 2, 3, 4])
    assert "null rate 0.800 above 0.700" in anomaly.message
    schema.null_rate_tolerance = 0.25
    assert check(reference().assign(cabin=cabins), schema).anomalies == []


def test_severity_comes_from_the_column_then_the_schema(schema):
    schema.severity["extra_column"] = "fail"
    schema.columns["fare"].severity = {"out_of_range": "fail"}
    report = check(reference().assign(fare=[1000.0] * 5, extra=1), schema)
    assert {(a.rule, a.severity) for a in report.anomalies} == {
        ("out_of_range", "fail"),
        ("extra_column", "fail"),
    }


def test_examples_are_at_most_five_distinct_values(schema):
    frame = pd.concat([reference()] * 4, ignore_index=True)
    frame["fare"] = np.arange(len(frame)) + 1000.0
    anomaly = only(check(frame, schema), "out_of_range")
    assert anomaly.count == 20
    assert anomaly.examples == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]


def test_a_type_change_skips_the_value_rules(schema):
    report = check(reference().assign(port=[1, 2, 3, 4, 5]), schema)
    assert [a.rule for a in report.anomalies] == ["type_change"]


def test_an_empty_frame_is_checked_for_columns_only(schema):
    report = check(reference().iloc[:0], schema)
    assert report.anomalies == []
    assert report.rows == 0


def test_next_months_flights_against_januarys_schema():
    january = load_flights([1])
    _, schema = analyze(january)
    report = check(load_flights([7]), schema)
    rules = {(a.column, a.rule) for a in report.anomalies}
    assert ("month", "out_of_range") in rules
    assert ("temp", "out_of_range") in rules  # July is warmer than any January hour
    assert report.ok  # drift in values warns; the shape of the data is unchanged
    assert not any(a.rule in ("type_change", "missing_column") for a in report.anomalies)


def test_a_million_rows_are_checked_without_python_loops(schema):
    import time

    big = reference().iloc[np.tile(np.arange(5), 200_000)].reset_index(drop=True)
    big.loc[::7, "fare"] = -5.0
    started = time.perf_counter()
    report = check(big, schema)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"{elapsed:.2f} s"  # under 1 s here; Python per row takes far longer
    assert only(report, "out_of_range").count == len(big[::7])
