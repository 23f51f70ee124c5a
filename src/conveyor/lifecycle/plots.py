"""Evaluation plots as PNG bytes: ROC, precision-recall, calibration, residuals.

Figures are drawn on matplotlib's Agg canvas without pyplot, so nothing global
changes (no backend switch, no figure registry) and steps in threads can plot at once.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["calibration_png", "pr_png", "residuals_png", "roc_png"]

_SIZE = (4.0, 4.0)
_DPI = 100


def _png(draw: Callable[[Any], None]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=_SIZE, dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    # No "Software" entry: the same figure gives the same bytes (one artifact, not many).
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def roc_png(y: np.ndarray, proba: np.ndarray, auc: float | None) -> bytes:
    """The ROC curve of P(positive) against the 0/1 truth ``y``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, proba)

    def draw(ax: Any) -> None:
        label = "model" if auc is None else f"model (AUC {auc:.3f})"
        ax.plot(fpr, tpr, label=label)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        ax.legend(loc="lower right")

    return _png(draw)


def pr_png(y: np.ndarray, proba: np.ndarray) -> bytes:
    """The precision-recall curve, with the positive rate as the chance line."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, proba)

    def draw(ax: Any) -> None:
        ax.plot(recall, precision, label="model")
        ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label="positive rate")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
        ax.legend(loc="lower left")

    return _png(draw)


def calibration_png(y: np.ndarray, proba: np.ndarray, bins: int) -> bytes:
    """The reliability diagram: the positive rate against the mean P(positive), per bin."""
    index = np.minimum((proba * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    seen = counts > 0
    mean_p = np.bincount(index, proba, minlength=bins)[seen] / counts[seen]
    rate = np.bincount(index, y.astype(np.float64), minlength=bins)[seen] / counts[seen]

    def draw(ax: Any) -> None:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        ax.plot(mean_p, rate, marker="o", label="model")
        ax.set(xlabel="mean predicted probability", ylabel="positive rate", title="Calibration")
        ax.legend(loc="upper left")

    return _png(draw)


def residuals_png(y: np.ndarray, pred: np.ndarray) -> bytes:
    """Residuals (truth minus prediction) against the prediction."""

    def draw(ax: Any) -> None:
        ax.scatter(pred, y - pred, s=6, alpha=0.5)
        ax.axhline(0.0, linestyle="--", color="grey")
        ax.set(xlabel="prediction", ylabel="residual (truth - prediction)", title="Residuals")

    return _png(draw)
