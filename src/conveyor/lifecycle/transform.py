"""Feature transforms: scikit-learn's own classes only, so skops saves them and serving reuses them.

`make_feature_transform` builds a ``ColumnTransformer`` (numbers: median
imputation, optional scaling; categories: ordinal codes with -1 for unknown or
missing values, or one-hot columns that ignore unknown values). Fit it on the
training split only and ship it inside the model: `make_model_pipeline`.
scikit-learn is imported when a transform is built, not when lifecycle is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from conveyor.errors import ValidationError
from conveyor.lifecycle.schema import Schema

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

__all__ = [
    "ENCODINGS",
    "UNKNOWN",
    "feature_kinds",
    "make_feature_transform",
    "make_model_pipeline",
]

Encoding = Literal["ordinal", "onehot"]
ENCODINGS: tuple[str, ...] = ("ordinal", "onehot")
UNKNOWN = -1  # the ordinal code of a category not seen in training, or a missing one


def feature_kinds(
    frame: pd.DataFrame, features: Sequence[str], schema: Schema | None = None
) -> tuple[list[str], list[str]]:
    """Split features into numeric (int, float, bool) and categorical (string, category).

    The schema's type decides where it names the column, else the dtype.

    Raises:
        ValidationError: a feature is missing from the frame or is a datetime.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for name in features:
        if name not in frame.columns:
            raise ValidationError("features", f"{name!r} is not a column of the data")
        kind = _kind(frame[name], schema.columns.get(name) if schema else None)
        if kind == "datetime":
            raise ValidationError(
                "features",
                f"{name!r} is a datetime; derive numbers from it (hour, weekday) or leave it out",
            )
        (numeric if kind == "numeric" else categorical).append(name)
    return numeric, categorical


def _kind(series: pd.Series, column: Any) -> str:
    if column is not None:
        if column.type in ("int", "float", "bool"):
            return "numeric"
        return "datetime" if column.type == "datetime" else "categorical"
    dtype = series.dtype
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_numeric_dtype(dtype) or ptypes.is_bool_dtype(dtype):
        return "numeric"
    return "categorical"


def make_feature_transform(
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    scale: bool = False,
    encoding: Encoding = "ordinal",
) -> ColumnTransformer:
    """An unfitted transform of these columns; other columns are dropped.

    Args:
        numeric: columns imputed with their training median (then scaled if ``scale``).
        categorical: columns encoded as categories.
        scale: standardize numeric columns (for linear models and neighbours).
        encoding: ``ordinal`` (one column of codes, ``UNKNOWN`` for unseen or missing
            values; for trees) or ``onehot`` (a column per category, all zero for
            unseen ones).

    Returns:
        A scikit-learn ``ColumnTransformer`` whose output is a float array.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if encoding not in ENCODINGS:
        raise ValidationError("encoding", f"must be one of {', '.join(ENCODINGS)}")
    if not numeric and not categorical:
        raise ValidationError("features", "there are no features to transform")
    # keep_empty_features: a column with no value in training still yields a column,
    # so training and serving agree on the width.
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
    ]
    if scale:
        steps.append(("scale", StandardScaler()))
    encoder: Any
    if encoding == "ordinal":
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=UNKNOWN,
            encoded_missing_value=UNKNOWN,
            dtype=np.float64,
        )
    else:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("numeric", Pipeline(steps), list(numeric)))
    if categorical:
        parts.append(("categorical", encoder, list(categorical)))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def make_model_pipeline(transform: Any, estimator: Any) -> Pipeline:
    """The transform and the model as one scikit-learn ``Pipeline``: ``transform``, ``model``.

    Serve and register the pipeline, not the bare model, so that predictions apply
    exactly the transform training used. Fitting the pipeline fits the transform
    again: fit it on the training split (``prepared.X_train``) only.
    """
    from sklearn.pipeline import Pipeline

    return Pipeline([("transform", transform), ("model", estimator)])


def transformed_features(model: Any, X: Any) -> pd.DataFrame | None:
    """What the model's estimator sees: ``X`` through every step of its pipeline but the last.

    For a scikit-learn ``Pipeline`` (as `make_model_pipeline` builds), the transformed
    rows as a frame named by ``get_feature_names_out`` where the steps give names
    (also for a registered pipeline as the registry loads it: its transform feeding
    a native LightGBM or XGBoost model); None for a bare model, which has no
    transform to compare. Monitoring profiles
    this at training and at serving (training-serving skew of the features the
    model really uses, after imputation and encoding).
    """
    from sklearn.pipeline import Pipeline

    from conveyor.lifecycle._evaluate import unwrap_model

    model = unwrap_model(model)
    if isinstance(model, Pipeline) and len(model.steps) >= 2:
        head = model[:-1]
    elif hasattr(model, "final") and hasattr(getattr(model, "transform", None), "transform"):
        head = model.transform  # a registered pipeline, loaded as transform + native model
    else:
        return None
    values = head.transform(X)
    if hasattr(values, "toarray"):
        values = values.toarray()
    values = np.asarray(values, dtype=np.float64)
    try:
        names = [str(n) for n in head.get_feature_names_out()]
    except (AttributeError, ValueError):
        names = [f"f{i}" for i in range(values.shape[1])]
    return pd.DataFrame(values, columns=names)
