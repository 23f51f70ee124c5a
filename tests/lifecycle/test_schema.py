import textwrap

import pandas as pd
import pytest
import yaml

from conveyor.errors import DataValidationError, ValidationError
from conveyor.lifecycle import Anomaly, AnomalyReport, ColumnSchema, Schema, analyze
from conveyor.lifecycle.schema import DEFAULT_SEVERITY, RULES


def sample_schema() -> Schema:
    df = pd.DataFrame(
        {
            "age": [31, 45, 27, 60],
            "fare": [7.25, 71.3, None, 8.05],
            "port": ["S", "C", "S", "Q"],
            "alive": [True, False, True, True],
            "when": pd.to_datetime(["2020-01-01"] * 4),
        }
    )
    return analyze(df)[1]


HAND_WRITTEN = textwrap.dedent(
    """\
    # written by a person
    version: 1
    severity:
      out_of_range: fail
    null_rate_tolerance: 0.05
    columns:
      age:
        type: int
        min: 0
        max: 120
      port:
        type: category
        categories: [S, C, Q, 'no']
        severity: {unseen_category: fail}
      note:
        type: string
        required: false
        null_rate: 0.5
    """
)


def test_yaml_round_trip_keeps_every_field(tmp_path):
    schema = sample_schema()
    schema.columns["port"].severity = {"unseen_category": "fail"}
    path = tmp_path / "schema.yaml"
    schema.save(path)
    back = Schema.load(path)
    assert back == schema
    assert back.to_yaml() == path.read_text()


def test_yaml_is_readable_with_a_stable_key_order():
    text = sample_schema().to_yaml()
    assert text.startswith("# conveyor schema")
    data = yaml.safe_load(text)
    assert list(data) == ["version", "severity", "null_rate_tolerance", "columns"]
    assert list(data["severity"]) == list(RULES)
    assert list(data["columns"]) == ["age", "fare", "port", "alive", "when"]
    assert list(data["columns"]["age"]) == ["type", "required", "null_rate", "min", "max"]
    assert "categories: [C, Q, S]" in text  # a list stays on one line
    assert sample_schema().to_yaml() == text


def test_a_hand_written_schema_loads_with_defaults_filled_in():
    schema = Schema.from_yaml(HAND_WRITTEN)
    assert schema["age"] == ColumnSchema("int", required=True, null_rate=0.0, min=0, max=120)
    assert schema["port"].categories == ["S", "C", "Q", "no"]
    assert schema.null_rate_tolerance == 0.05
    assert schema.severity_of("age", "out_of_range") == "fail"  # the schema's own
    assert schema.severity_of("port", "unseen_category") == "fail"  # the column's
    assert schema.severity_of("port", "extra_column") == DEFAULT_SEVERITY["extra_column"]
    assert not schema["note"].required


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"colour": 1}, "colour", "unknown key"),
        ({"columns": {"age": {"type": "int", "maxx": 3}}}, "columns.age.maxx", "unknown key"),
        ({"columns": {"age": {"type": "integer"}}}, "columns.age.type", "must be one of"),
        ({"columns": {"age": {"type": "int", "min": "low"}}}, "columns.age.min", "number"),
        ({"columns": {"age": {"type": "int", "min": 5, "max": 1}}}, "columns.age.min", "above"),
        ({"columns": {"s": {"type": "string", "min": 1}}}, "columns.s.min", "int and float"),
        (
            {"columns": {"b": {"type": "bool", "categories": ["x"]}}},
            "columns.b.categories",
            "applies",
        ),
        (
            {"columns": {"age": {"type": "int", "required": "yes"}}},
            "columns.age.required",
            "true or",
        ),
        ({"columns": {"age": {"type": "int", "null_rate": 2}}}, "columns.age.null_rate", "0"),
        ({"severity": {"out_of_range": "panic"}}, "severity.out_of_range", "fail or warn"),
        ({"severity": {"too_big": "warn"}}, "severity.too_big", "unknown key"),
        (
            {"columns": {"a": {"type": "int", "severity": {"x": "warn"}}}},
            "columns.a.severity.x",
            "unknown",
        ),
        ({"columns": [1, 2]}, "columns", "mapping"),
        ({"version": 2}, "version", "must be 1"),
        ({"null_rate_tolerance": -1}, "null_rate_tolerance", "between 0 and 1"),
    ],
)
def test_each_invalid_field_is_named(change, field, rule):
    data = {"version": 1, "columns": {}} | change
    with pytest.raises(ValidationError, match=rule) as info:
        Schema.from_yaml(yaml.safe_dump(data), source="s.yaml")
    assert info.value.field == field
    assert str(info.value).startswith(f"s.yaml: {field}: ")


def test_an_unquoted_yaml_boolean_among_categories_is_explained():
    text = "columns:\n  answer:\n    type: category\n    categories: [yes, no]\n"
    with pytest.raises(ValidationError, match="quote True") as info:
        Schema.from_yaml(text)
    assert info.value.field == "columns.answer.categories[0]"


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  a: [unclosed\n  b: 1\n")
    with pytest.raises(ValidationError, match=r"is not valid YAML at line \d+") as info:
        Schema.load(path)
    assert info.value.field == str(path)
    with pytest.raises(ValidationError, match="must be a mapping"):
        Schema.from_yaml("")
    with pytest.raises(ValidationError, match="no such schema file"):
        Schema.load(tmp_path / "absent.yaml")


def test_schema_bytes_are_its_yaml():
    schema = sample_schema()
    assert Schema.from_bytes(schema.to_bytes()) == schema
    with pytest.raises(ValidationError, match="is not a column"):
        schema["nope"]


def test_a_report_is_ok_with_warnings_and_raises_only_for_failures():
    warn = Anomaly("fare", "out_of_range", "warn", 2, [900.0], "2 value(s) outside [0, 500]")
    fail = Anomaly("age", "type_change", "fail", 4, ["x", "y"], "values of dtype str")
    assert AnomalyReport(10, [warn]).ok
    AnomalyReport(10, [warn]).raise_for_failures()
    report = AnomalyReport(10, [warn, fail])
    assert not report.ok
    assert report.failures == [fail]
    assert report.warnings == [warn]
    with pytest.raises(DataValidationError) as info:
        report.raise_for_failures()
    assert (info.value.column, info.value.rule, info.value.anomalies) == (
        "age",
        "type_change",
        [fail],
    )
    assert "age: type_change (fail)" in str(info.value)
    assert "['x', 'y']" in str(info.value)
    assert "fare" not in str(info.value)
    assert "1 failing, 1 warning" in str(report)


def test_a_report_round_trips_through_json():
    report = AnomalyReport(3, [Anomaly("a", "required_nulls", "fail", 1, [2], "1 missing")])
    assert AnomalyReport.from_bytes(report.to_bytes()) == report
