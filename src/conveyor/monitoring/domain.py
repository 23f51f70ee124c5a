"""Multivariate drift: a domain classifier that tries to tell reference rows from current rows.

A gradient-boosted classifier (scikit-learn's ``HistGradientBoostingClassifier``)
learns to predict whether a row comes from the current data. Its cross-validated,
out-of-fold ROC AUC is the drift score: about 0.5 when the two datasets cannot be
told apart, up to 1.0 when they are fully separable. Columns are ranked by the drop
in ROC AUC when each one is shuffled on the held-out fold (permutation importance).

Numeric columns are used as floats, missing values as NaN (handled natively);
categorical and boolean columns are ordinal-encoded over the categories of both
sides, so that a category seen only in current gets its own code. Datetime
columns are left out unless named in ``columns`` (time alone tells windows apart).

Example::

    from conveyor.monitoring import domain_classifier

    report = domain_classifier(reference_frame, current_frame)
    report.roc_auc, report.drifted, report.top_columns[:3]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.errors import ValidationError
from conveyor.profiling.tables import Source, open_source

__all__ = ["DomainReport", "domain_classifier"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_MAX_CATEGORIES = 255  # HistGradientBoostingClassifier's limit for a categorical feature
_IMPORTANCE_ROWS = 10_000  # held-out rows per fold used to rank columns


@dataclass(frozen=True)
class DomainReport:
    """The verdict of a domain classifier.

    Attributes:
        roc_auc: cross-validated (out-of-fold) ROC AUC of telling current from reference.
        drifted: ``roc_auc >= threshold``.
        threshold: the ROC AUC from which the data counts as drifted.
        top_columns: ``(column, ROC AUC drop when shuffled)``, largest drop first.
        rows_used: reference plus current rows the classifier saw after sampling.
    """

    roc_auc: float
    drifted: bool
    threshold: float
    top_columns: list[tuple[str, float]]
    rows_used: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "roc_auc": self.roc_auc,
            "drifted": self.drifted,
            "threshold": self.threshold,
            "top_columns": [
                {"column": name, "importance": value} for name, value in self.top_columns
            ],
            "rows_used": self.rows_used,
        }


def _rows(source: Source, max_rows: int, rng: np.random.Generator) -> IntArray:
    n = source.num_rows
    if n <= max_rows:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=max_rows, replace=False)).astype(np.int64)


def _names(ref: Source, cur: Source, columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        if not columns:
            raise ValidationError("columns", "must name at least one column")
        for name in columns:
            for role, side in (("reference", ref), ("current", cur)):
                if name not in side.names:
                    raise ValidationError(name, f"is not a column of the {role} data")
                if side.kind(name) is None:
                    raise ValidationError(name, f"type {side.type_name(name)} is not monitored")
        return list(columns)
    common = set(cur.names)
    names = [
        name
        for name in ref.names
        if name in common and ref.kind(name) not in (None, "datetime") and cur.kind(name)
    ]
    if not names:
        raise ValidationError("columns", "reference and current have no common monitored column")
    return names


def _feature(
    name: str, ref: Source, cur: Source, ref_rows: IntArray, cur_rows: IntArray
) -> tuple[FloatArray, bool]:
    """One column of both sides as floats, and whether it is categorical."""
    left, right = ref.column(name), cur.column(name)
    numeric = ("numeric", "datetime")
    if (left.kind in numeric) != (right.kind in numeric):
        raise ValidationError(
            name, f"type changed: {left.kind} in reference, {right.kind} in current"
        )
    if left.numbers is not None and right.numbers is not None:
        return np.concatenate([left.numbers[ref_rows], right.numbers[cur_rows]]), False
    assert left.strings is not None
    assert right.strings is not None
    strings = pa.chunked_array(
        [
            *left.strings.take(pa.array(ref_rows)).chunks,
            *right.strings.take(pa.array(cur_rows)).chunks,
        ],
        type=pa.large_string(),
    )
    encoded = pc.dictionary_encode(strings).combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.float64)
    # Nulls come back as NaN; rank codes by frequency so that a cap keeps the common ones.
    valid = ~np.isnan(codes)
    counts = np.bincount(codes[valid].astype(np.int64), minlength=len(encoded.dictionary))
    rank = np.empty(counts.size, dtype=np.float64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(counts.size, dtype=np.float64)
    codes[valid] = rank[codes[valid].astype(np.int64)]
    return codes, counts.size <= _MAX_CATEGORIES


def _auc_drops(
    model: Any, x: FloatArray, y: IntArray, base: float, rng: np.random.Generator
) -> FloatArray:
    """ROC AUC drop per column when it is shuffled, from one batched prediction."""
    from sklearn.metrics import roc_auc_score

    m, p = x.shape
    stacked = np.broadcast_to(x, (p, m, p)).copy()
    for j in range(p):
        stacked[j, :, j] = x[rng.permutation(m), j]
    scores = model.predict_proba(stacked.reshape(p * m, p))[:, 1].reshape(p, m)
    return np.array([base - roc_auc_score(y, scores[j]) for j in range(p)], dtype=np.float64)


def domain_classifier(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    max_rows: int = 50_000,
    n_splits: int = 3,
    seed: int = 0,
    threshold: float = 0.55,
) -> DomainReport:
    """Test whether a classifier can tell ``current`` rows from ``reference`` rows.

    Args:
        reference: a pandas or polars DataFrame, a pyarrow Table or a Parquet file path.
        current: the same kinds of input.
        columns: the columns to use (default: every monitored column both sides share,
            datetimes excepted).
        max_rows: each side is sampled down to at most this many rows (seeded).
        n_splits: folds of the stratified cross-validation.
        seed: seed of the sampling, the folds, the shuffles and the model.
        threshold: the ROC AUC from which the data counts as drifted.

    Returns:
        The out-of-fold ROC AUC, the verdict and the columns ranked by importance.

    Raises:
        ValidationError: for unsupported input, an empty side, too few rows for the
            folds, no common column, a requested column missing or of a type not
            monitored, a column whose type changed, or bad parameters.
    """
    if max_rows < 1:
        raise ValidationError("max_rows", "must be at least 1")
    if n_splits < 2:
        raise ValidationError("n_splits", "must be at least 2")
    if not 0.5 <= threshold <= 1:
        raise ValidationError("threshold", "must be in [0.5, 1]")
    ref, cur = open_source(reference), open_source(current)
    for role, side in (("reference", ref), ("current", cur)):
        if side.num_rows == 0:
            raise ValidationError(role, "is empty")
        if min(side.num_rows, max_rows) < n_splits:
            raise ValidationError(role, f"needs at least n_splits={n_splits} rows")
    names = _names(ref, cur, columns)

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    ref_rows, cur_rows = _rows(ref, max_rows, rng), _rows(cur, max_rows, rng)
    features = [_feature(name, ref, cur, ref_rows, cur_rows) for name in names]
    x = np.column_stack([values for values, _ in features])
    x[:, np.isnan(x).all(axis=0)] = 0.0  # all missing on both sides: constant, uninformative
    categorical = np.array([flag for _, flag in features], dtype=bool)
    y = np.concatenate([np.zeros(ref_rows.size, np.int64), np.ones(cur_rows.size, np.int64)])

    oof = np.empty(y.size, dtype=np.float64)
    drops = np.zeros(len(names), dtype=np.float64)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in folds.split(x, y):
        model = HistGradientBoostingClassifier(
            max_iter=100, random_state=seed, categorical_features=categorical
        )
        model.fit(x[train], y[train])
        oof[test] = model.predict_proba(x[test])[:, 1]
        held = test if test.size <= _IMPORTANCE_ROWS else rng.choice(test, _IMPORTANCE_ROWS, False)
        if np.unique(y[held]).size == 2:
            base = float(roc_auc_score(y[held], oof[held]))
            drops += _auc_drops(model, x[held], y[held], base, rng)
    roc_auc = float(roc_auc_score(y, oof))
    ranked = sorted(
        zip(names, (float(d) for d in drops / n_splits), strict=True), key=lambda t: -t[1]
    )
    return DomainReport(
        roc_auc=roc_auc,
        drifted=roc_auc >= threshold,
        threshold=threshold,
        top_columns=ranked,
        rows_used=int(y.size),
    )
