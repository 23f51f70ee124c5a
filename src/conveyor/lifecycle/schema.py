"""Schema: the expectations drawn from a dataset, as editable YAML; and the anomalies found."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from conveyor.errors import DataValidationError, ValidationError

__all__ = [
    "DEFAULT_SEVERITY",
    "RULES",
    "TYPES",
    "Anomaly",
    "AnomalyReport",
    "ColumnSchema",
    "Rule",
    "Schema",
    "Severity",
]

SCHEMA_VERSION = 1
Type = Literal["int", "float", "bool", "string", "category", "datetime"]
Rule = Literal[
    "missing_column",
    "extra_column",
    "type_change",
    "out_of_range",
    "unseen_category",
    "null_rate_jump",
    "required_nulls",
]
Severity = Literal["fail", "warn"]
TYPES: tuple[str, ...] = get_args(Type)
RULES: tuple[str, ...] = get_args(Rule)
SEVERITIES: tuple[str, ...] = get_args(Severity)
NUMERIC_TYPES = ("int", "float")
# A changed shape or a null where none may be stops a stage; drift in values is reported.
DEFAULT_SEVERITY: dict[str, Severity] = {
    "missing_column": "fail",
    "extra_column": "warn",
    "type_change": "fail",
    "out_of_range": "warn",
    "unseen_category": "warn",
    "null_rate_jump": "warn",
    "required_nulls": "fail",
}
DEFAULT_NULL_RATE_TOLERANCE = 0.1
_TOP_KEYS = ("version", "severity", "null_rate_tolerance", "columns")
_COLUMN_KEYS = ("type", "required", "null_rate", "min", "max", "categories", "severity")
_HEADER = """\
# conveyor schema (edit freely). Per column: type (int, float, bool, string, category,
# datetime), required (no nulls allowed), null_rate (seen when inferred), min/max (int and
# float), categories (the allowed values). severity: fail (stops prepare) or warn, for each
# rule at the top and per column: missing_column, extra_column, type_change, out_of_range,
# unseen_category, null_rate_jump (null rate above null_rate + null_rate_tolerance),
# required_nulls.
"""


@dataclass
class ColumnSchema:
    """What one column's values must look like.

    Attributes:
        type: int, float, bool, string, category or datetime.
        required: no value may be missing.
        null_rate: the share of missing values seen when the schema was inferred.
        min: the smallest allowed value (int and float columns), or None.
        max: the largest allowed value (int and float columns), or None.
        categories: the allowed values (string and category columns), or None for any.
        severity: per-rule severities for this column, over the schema's.
    """

    type: Type
    required: bool = True
    null_rate: float = 0.0
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    severity: dict[str, Severity] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The column as plain data in a stable key order, leaving out what is unset."""
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        out["null_rate"] = self.null_rate
        for key in ("min", "max", "categories"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.severity:
            out["severity"] = dict(self.severity)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ColumnSchema:
        """A column from YAML data, every field checked; ``where`` prefixes field names."""
        _check_mapping(data, where, _COLUMN_KEYS)
        kind = data.get("type")
        if kind not in TYPES:
            raise ValidationError(f"{where}.type", f"must be one of {', '.join(TYPES)}")
        column = cls(kind, severity=_severities(data.get("severity", {}), f"{where}.severity"))
        column.required = _boolean(data.get("required", True), f"{where}.required")
        column.null_rate = _rate(data.get("null_rate", 0.0), f"{where}.null_rate")
        for key in ("min", "max"):
            if data.get(key) is not None:
                if kind not in NUMERIC_TYPES:
                    raise ValidationError(f"{where}.{key}", "applies to int and float columns")
                setattr(column, key, _number(data[key], f"{where}.{key}"))
        if column.min is not None and column.max is not None and column.min > column.max:
            raise ValidationError(f"{where}.min", f"{column.min} is above max {column.max}")
        if data.get("categories") is not None:
            if kind not in ("string", "category"):
                raise ValidationError(f"{where}.categories", "applies to string and category")
            column.categories = _strings(data["categories"], f"{where}.categories")
        return column


@dataclass
class Schema:
    """Expectations for a dataset's columns; `check` finds the anomalies against it.

    Attributes:
        columns: each column's expectations, by name, in the data's order.
        severity: the severity of each rule (see `DEFAULT_SEVERITY`).
        null_rate_tolerance: how far a column's null rate may rise above its
            ``null_rate`` before ``null_rate_jump`` is reported.
    """

    columns: dict[str, ColumnSchema]
    severity: dict[str, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    null_rate_tolerance: float = DEFAULT_NULL_RATE_TOLERANCE

    def __getitem__(self, name: str) -> ColumnSchema:
        try:
            return self.columns[name]
        except KeyError:
            raise ValidationError(name, "is not a column of this schema") from None

    def severity_of(self, column: str, rule: str) -> Severity:
        """The severity of ``rule`` for ``column``: the column's, else the schema's."""
        own = self.columns[column].severity if column in self.columns else {}
        return own.get(rule) or self.severity.get(rule) or DEFAULT_SEVERITY[rule]

    def to_dict(self) -> dict[str, Any]:
        """The schema as plain data in a stable key order."""
        return {
            "version": SCHEMA_VERSION,
            "severity": {rule: self.severity_of("", rule) for rule in RULES},
            "null_rate_tolerance": self.null_rate_tolerance,
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Schema:
        """A schema from plain data, every field checked.

        Raises:
            ValidationError: naming the first field that is unknown, missing or invalid.
        """
        _check_mapping(data, "schema", _TOP_KEYS)
        if data.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValidationError("version", f"must be {SCHEMA_VERSION}")
        columns = data.get("columns")
        if not isinstance(columns, dict):
            raise ValidationError("columns", "must be a mapping of column name to expectations")
        severity = {**DEFAULT_SEVERITY, **_severities(data.get("severity", {}), "severity")}
        tolerance = _rate(
            data.get("null_rate_tolerance", DEFAULT_NULL_RATE_TOLERANCE), "null_rate_tolerance"
        )
        parsed = {
            str(name): ColumnSchema.from_dict(spec, f"columns.{name}")
            for name, spec in columns.items()
        }
        return cls(parsed, severity, tolerance)

    def to_yaml(self) -> str:
        """The schema as YAML, with a header saying what each key means."""
        body = yaml.dump(
            self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
        )
        return _HEADER + body

    @classmethod
    def from_yaml(cls, text: str, source: str = "schema") -> Schema:
        """The schema in YAML ``text``; ``source`` names it in errors.

        Raises:
            ValidationError: the text is not YAML, or a field is unknown or invalid.
        """
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ValidationError(source, f"is not valid YAML{where}: {problem}") from None
        try:
            return cls.from_dict(data)
        except ValidationError as exc:
            raise ValidationError(exc.field, exc.rule, f"{source}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the schema as YAML to ``path``."""
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schema:
        """The schema in the YAML file at ``path``.

        Raises:
            ValidationError: there is no such file, or its content is not a valid schema.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValidationError(str(path), "no such schema file") from None
        return cls.from_yaml(text, str(path))

    def to_bytes(self) -> bytes:
        """The YAML as UTF-8 (how a schema is stored as a step output)."""
        return self.to_yaml().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Schema:
        """The schema `to_bytes` wrote."""
        return cls.from_yaml(data.decode("utf-8"))


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for lists (categories stay on one line)."""


def _flow_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(list, _flow_list)


def _check_mapping(data: Any, where: str, known: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise ValidationError(where, "must be a mapping")
    for key in data:
        if key not in known:
            name = f"{where}.{key}" if where != "schema" else str(key)
            raise ValidationError(name, f"unknown key; expected one of {', '.join(known)}")


def _severities(data: Any, where: str) -> dict[str, Severity]:
    _check_mapping(data, where, RULES)
    for rule, value in data.items():
        if value not in SEVERITIES:
            raise ValidationError(f"{where}.{rule}", "must be fail or warn")
    return cast(dict[str, Severity], dict(data))


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(where, "must be true or false")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValidationError(where, "must be a number")
    return value


def _rate(value: Any, where: str) -> float:
    number = _number(value, where)
    if not 0 <= number <= 1:
        raise ValidationError(where, "must be between 0 and 1")
    return float(number)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ValidationError(where, "must be a list of values")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValidationError(
                f"{where}[{i}]", f"must be a string; quote {item!r} as '{item}' in YAML"
            )
    return list(value)


@dataclass(frozen=True)
class Anomaly:
    """One way the data breaks its schema.

    Attributes:
        column: the column.
        rule: missing_column, extra_column, type_change, out_of_range, unseen_category,
            null_rate_jump or required_nulls.
        severity: fail or warn, from the schema.
        count: how many values break the rule (rows with nulls for the null rules).
        examples: up to 5 offending values (row labels for the null rules).
        message: the anomaly in words.
    """

    column: str
    rule: Rule
    severity: Severity
    count: int
    examples: list[Any]
    message: str

    def __str__(self) -> str:
        shown = f" e.g. {self.examples}" if self.examples else ""
        return f"{self.column}: {self.rule} ({self.severity}) {self.message}{shown}"

    def to_dict(self) -> dict[str, Any]:
        """The anomaly as JSON-able data."""
        return {
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "count": self.count,
            "examples": self.examples,
            "message": self.message,
        }


@dataclass(frozen=True)
class AnomalyReport:
    """The anomalies `check` found; a failed check is this result, not an exception.

    Attributes:
        rows: rows checked.
        anomalies: every anomaly, column by column.
    """

    rows: int
    anomalies: list[Anomaly]

    @property
    def ok(self) -> bool:
        """True when no anomaly has severity fail (warnings may remain)."""
        return not self.failures

    @property
    def failures(self) -> list[Anomaly]:
        """The anomalies with severity fail."""
        return [a for a in self.anomalies if a.severity == "fail"]

    @property
    def warnings(self) -> list[Anomaly]:
        """The anomalies with severity warn."""
        return [a for a in self.anomalies if a.severity == "warn"]

    def __str__(self) -> str:
        if not self.anomalies:
            return f"{self.rows} rows: no anomalies"
        lines = [f"{self.rows} rows: {len(self.failures)} failing, {len(self.warnings)} warning"]
        return "\n".join([*lines, *(f"  {a}" for a in self.anomalies)])

    def raise_for_failures(self) -> None:
        """Raise `DataValidationError` naming each failing column, rule and examples."""
        failures = self.failures
        if failures:
            listed = "; ".join(str(a) for a in failures)
            message = f"data breaks its schema: {listed}"
            raise DataValidationError(failures[0].column, failures[0].rule, message, list(failures))

    def to_bytes(self) -> bytes:
        """The report as JSON (how it is stored as a step output)."""
        data = {"rows": self.rows, "anomalies": [a.to_dict() for a in self.anomalies]}
        return json.dumps(data, separators=(",", ":"), default=str).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AnomalyReport:
        """The report `to_bytes` wrote."""
        state = json.loads(data)
        return cls(int(state["rows"]), [Anomaly(**a) for a in state["anomalies"]])
