"""Prepare: check, clean and split the data, and fit the feature transform on the training split."""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from conveyor.core.step import step
from conveyor.errors import ValidationError
from conveyor.lifecycle._check import check, conforms
from conveyor.lifecycle._extract import Dataset, as_frame
from conveyor.lifecycle.schema import AnomalyReport, Schema
from conveyor.lifecycle.transform import Encoding, feature_kinds, make_feature_transform

__all__ = ["POLICIES", "SPLITS", "Prepared", "prepare", "split_frame"]

logger = logging.getLogger(__name__)

Split = Literal["random", "stratified", "time", "group"]
Policy = Literal["fail", "warn"]
SPLITS: tuple[str, ...] = ("random", "stratified", "time", "group")
POLICIES: tuple[str, ...] = ("fail", "warn")
MAX_CLASSES = 50  # an integer target with more distinct values than this is a regression
PREPARED_FORMAT = "conveyor.prepared/1"
# What a stored transform may contain: scikit-learn's classes and numpy's dtypes.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.")


@dataclass(frozen=True, eq=False)
class Prepared:
    """Clean training and test splits and the transform fitted on the training split.

    Attributes:
        train: the training rows (every column, cleaned).
        test: the test rows.
        target: the target column.
        features: the feature columns, in the transform's input order.
        transform: a fitted scikit-learn ``ColumnTransformer`` (see `make_model_pipeline`).
        report: the anomalies found before cleaning.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    features: list[str]
    transform: Any
    report: AnomalyReport

    @property
    def X_train(self) -> pd.DataFrame:
        """The training features."""
        return self.train[self.features]

    @property
    def y_train(self) -> pd.Series:
        """The training target."""
        return self.train[self.target]

    @property
    def X_test(self) -> pd.DataFrame:
        """The test features."""
        return self.test[self.features]

    @property
    def y_test(self) -> pd.Series:
        """The test target."""
        return self.test[self.target]

    def to_bytes(self) -> bytes:
        """A zip of both splits (Parquet), the transform (skops) and the rest (JSON)."""
        import skops.io as sio

        meta = {"format": PREPARED_FORMAT, "target": self.target, "features": self.features}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("prepared.json", json.dumps(meta))
            archive.writestr("report.json", self.report.to_bytes())
            archive.writestr("transform.skops", sio.dumps(self.transform))
            for name in ("train", "test"):
                frame = getattr(self, name)
                archive.writestr(f"{name}.parquet", Dataset.of(frame, name).to_bytes())
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Prepared:
        """The prepared data `to_bytes` wrote.

        Raises:
            ValidationError: the bytes are not prepared data, or the transform holds
                types other than scikit-learn's and numpy's.
        """
        import skops.io as sio

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            meta = json.loads(archive.read("prepared.json"))
            if meta.get("format") != PREPARED_FORMAT:
                raise ValidationError("prepared", f"is not {PREPARED_FORMAT}")
            blob = archive.read("transform.skops")
            untrusted = sio.get_untrusted_types(data=blob)
            foreign = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
            if foreign:
                raise ValidationError("transform", f"holds types that are not trusted: {foreign}")
            transform = sio.loads(blob, trusted=untrusted)
            train, test = (
                Dataset.from_bytes(archive.read(f"{n}.parquet")).frame for n in ("train", "test")
            )
            report = AnomalyReport.from_bytes(archive.read("report.json"))
        return cls(train, test, meta["target"], list(meta["features"]), transform, report)


@step
def prepare(
    data: pd.DataFrame | Dataset,
    schema: Schema,
    target: str,
    policy: Policy = "fail",
    split: Split = "random",
    test_size: float = 0.2,
    time_column: str | None = None,
    group_column: str | None = None,
    seed: int = 0,
    features: list[str] | None = None,
    scale: bool = False,
    encoding: Encoding = "ordinal",
) -> Prepared:
    """Check the data, clean it, split it and fit the feature transform on the training rows.

    Args:
        data: the data (features and target).
        schema: the expectations it is checked against first.
        target: the column to predict; rows where it is missing are dropped.
        policy: ``fail`` raises on anomalies of severity fail; ``warn`` logs every
            anomaly and goes on (the report is in ``prepared.report`` either way).
        split: ``random``, ``stratified`` (keeps the classes' shares), ``time`` (the
            latest rows of ``time_column`` are the test set) or ``group`` (no value of
            ``group_column`` is in both sets).
        test_size: the share of rows (of groups, for ``group``) in the test set.
        time_column: the column ordering the rows, for ``split="time"``.
        group_column: the column whose values stay together, for ``split="group"``.
        seed: the random seed of the random, stratified and group splits.
        features: the feature columns; by default every column but the target, the
            time and group columns and datetime columns.
        scale: standardize numeric features.
        encoding: ``ordinal`` or ``onehot`` for categorical features.

    Returns:
        The prepared splits with the fitted transform.

    Raises:
        DataValidationError: with policy fail, an anomaly of severity fail.
        ValidationError: the target is missing or constant, an argument is invalid,
            or the split leaves a set or a class empty.
    """
    _check_options(policy, split, test_size)
    frame = as_frame(data)
    if target not in frame.columns:
        raise ValidationError("target", f"{target!r} is not a column of the data")
    report = check(frame, schema)
    if policy == "fail":
        report.raise_for_failures()
    for anomaly in report.anomalies:
        logger.warning("prepare: %s", anomaly)
    frame = _clean(frame, schema, target)
    chosen = _features(frame, schema, target, features, (time_column, group_column))
    train, test = split_frame(
        frame,
        target,
        split=split,
        test_size=test_size,
        time_column=time_column,
        group_column=group_column,
        seed=seed,
    )
    numeric, categorical = feature_kinds(frame, chosen, schema)
    transform = make_feature_transform(numeric, categorical, scale=scale, encoding=encoding)
    transform.fit(train[chosen])
    return Prepared(train, test, target, chosen, transform, report)


def _check_options(policy: str, split: str, test_size: float) -> None:
    if policy not in POLICIES:
        raise ValidationError("policy", f"must be one of {', '.join(POLICIES)}")
    _check_split(split, test_size)


def _check_split(split: str, test_size: float) -> None:
    if split not in SPLITS:
        raise ValidationError("split", f"must be one of {', '.join(SPLITS)}")
    if isinstance(test_size, bool) or not 0 < test_size < 1:
        raise ValidationError("test_size", "must be a share of the rows, between 0 and 1")


def _clean(frame: pd.DataFrame, schema: Schema, target: str) -> pd.DataFrame:
    """Drop rows without a target; give each column the dtype its schema type asks for."""
    kept = frame[frame[target].notna()]
    if kept.empty:
        raise ValidationError("target", f"{target!r} is missing in every row")
    columns: dict[str, pd.Series] = {}
    for name, column in schema.columns.items():
        if name in kept.columns and not conforms(kept[name], column.type)[0]:
            columns[name] = _coerce(kept[name], column.type)
    cleaned = kept.assign(**columns) if columns else kept
    labels = cleaned[target]
    if labels.nunique(dropna=True) < 2:
        raise ValidationError(
            "target", f"{target!r} is constant ({labels.iloc[0]!r} in every row): nothing to learn"
        )
    return cleaned.reset_index(drop=True)


def _coerce(series: pd.Series, kind: str) -> pd.Series:
    if kind in ("int", "float"):
        return pd.to_numeric(series, errors="coerce").astype(np.float64)
    if kind == "datetime":
        return pd.to_datetime(series, errors="coerce")
    if kind == "bool":
        try:
            return series.astype("boolean").astype(np.float64)
        except (TypeError, ValueError):
            return pd.to_numeric(series, errors="coerce").astype(np.float64)
    return series.astype("str")


def _features(
    frame: pd.DataFrame,
    schema: Schema,
    target: str,
    features: Sequence[str] | None,
    reserved: tuple[str | None, ...],
) -> list[str]:
    if features is not None:
        chosen = list(features)
        if target in chosen:
            raise ValidationError("features", f"the target {target!r} cannot be a feature")
        return chosen
    left_out = {target, *(name for name in reserved if name)}
    chosen = []
    for name in (str(c) for c in frame.columns):
        column = schema.columns.get(name)
        is_time = (column.type == "datetime") if column else None
        if is_time is None:
            is_time = ptypes.is_datetime64_any_dtype(frame[name].dtype)
        if name not in left_out and not is_time:
            chosen.append(name)
    if not chosen:
        raise ValidationError("features", "no column is left to be a feature")
    return chosen


def split_frame(
    frame: pd.DataFrame,
    target: str,
    *,
    split: Split = "random",
    test_size: float = 0.2,
    time_column: str | None = None,
    group_column: str | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into training and test sets (see `prepare` for the kinds).

    Raises:
        ValidationError: a needed column is missing or has nulls, or a set or a
            class of the target ends up empty.
    """
    _check_split(split, test_size)
    if split == "time":
        test = _time_mask(frame, _column_of(frame, time_column, "time_column"), test_size)
    elif split == "group":
        test = _group_mask(frame, _column_of(frame, group_column, "group_column"), test_size, seed)
    else:
        test = _random_mask(frame, target, split == "stratified", test_size, seed)
    train_rows, test_rows = frame[~test], frame[test]
    for side, rows in (("training", train_rows), ("test", test_rows)):
        if rows.empty:
            raise ValidationError("split", f"the {split} split leaves the {side} set empty")
    _check_classes(frame[target], train_rows[target], test_rows[target], split)
    return train_rows.reset_index(drop=True), test_rows.reset_index(drop=True)


def _column_of(frame: pd.DataFrame, name: str | None, argument: str) -> pd.Series:
    if name is None:
        raise ValidationError(argument, f"is needed for this split; name the {argument}")
    if name not in frame.columns:
        raise ValidationError(argument, f"{name!r} is not a column of the data")
    series = frame[name]
    nulls = int(series.isna().sum())
    if nulls:
        raise ValidationError(argument, f"{name!r} has {nulls} missing value(s); fill or drop them")
    return series


def _time_mask(frame: pd.DataFrame, times: pd.Series, test_size: float) -> np.ndarray:
    ordered = times.sort_values(ignore_index=True)
    n_test = math.ceil(len(ordered) * test_size)
    cutoff = ordered.iloc[len(ordered) - n_test]
    test = np.asarray(times >= cutoff, dtype=bool)  # rows at the cutoff time all go to test
    if test.all():
        raise ValidationError(
            "time_column", f"{times.name!r}: every row is at or after the cutoff {cutoff}"
        )
    return test


def _group_mask(frame: pd.DataFrame, groups: pd.Series, test_size: float, seed: int) -> np.ndarray:
    from sklearn.model_selection import GroupShuffleSplit

    if groups.nunique() < 2:
        raise ValidationError("group_column", f"{groups.name!r} has one group; a split needs 2")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    _, test_index = next(splitter.split(frame, groups=groups.to_numpy()))
    test = np.zeros(len(frame), dtype=bool)
    test[test_index] = True
    return test


def _random_mask(
    frame: pd.DataFrame, target: str, stratified: bool, test_size: float, seed: int
) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    labels = frame[target]
    if stratified:
        if _classes(labels) is None:
            raise ValidationError("split", "stratified needs a classification target")
        counts = labels.value_counts()
        rare = counts[counts < 2]
        if len(rare):
            raise ValidationError(
                "target",
                f"class {rare.index[0]!r} of {target!r} has {int(rare.iloc[0])} row; "
                "a stratified split needs at least 2 per class",
            )
    positions = np.arange(len(frame))
    try:
        _, test_index = train_test_split(
            positions,
            test_size=test_size,
            random_state=seed,
            stratify=labels.to_numpy() if stratified else None,
        )
    except ValueError as exc:  # e.g. fewer test rows than classes
        raise ValidationError("test_size", f"the {target!r} split is impossible: {exc}") from None
    test = np.zeros(len(frame), dtype=bool)
    test[test_index] = True
    return test


def _classes(labels: pd.Series) -> list[Any] | None:
    """The target's classes, or None when it is a regression target."""
    dtype = labels.dtype
    if ptypes.is_float_dtype(dtype) or ptypes.is_datetime64_any_dtype(dtype):
        return None
    distinct = labels.dropna().unique()
    if ptypes.is_integer_dtype(dtype) and len(distinct) > MAX_CLASSES:
        return None
    return list(distinct)


def _check_classes(labels: pd.Series, train: pd.Series, test: pd.Series, split: str) -> None:
    classes = _classes(labels)
    if classes is None:
        return
    for side, rows in (("training", train), ("test", test)):
        present = set(rows.unique())
        for cls in classes:
            if cls not in present:
                total = int((labels == cls).sum())
                raise ValidationError(
                    "split",
                    f"the {split} split leaves class {cls!r} of {labels.name!r} with no rows in "
                    f"the {side} set ({total} in all); try split='stratified', another "
                    "test_size or more data",
                )
