"""A drift report as one self-contained HTML page: the verdicts, and a plot per drifted column.

Plots are drawn with matplotlib's Agg renderer (no display, no pyplot state)
and embedded as base64 PNG, so the page needs no network and no other file.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from conveyor.monitoring.results import ColumnDrift, DriftReport, Histogram

__all__ = ["render_html", "write_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: 0.25rem 0.75rem; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.drifted td { background: #fdecea; }
.verdict { font-size: 1.2rem; }
figure { display: inline-block; margin: 0.5rem; }
"""
_REFERENCE_COLOR = "#4c72b0"
_CURRENT_COLOR = "#dd8452"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _verdict_text(drifted: bool | None) -> str:
    return {True: "drifted", False: "no drift", None: "not tested"}[drifted]


def _summary(report: DriftReport) -> str:
    tested = len(report.tested_columns)
    drifted = len(report.drifted_columns)
    share = "-" if report.share_drifted is None else f"{report.share_drifted:.0%}"
    return (
        f"Dataset: <strong>{_verdict_text(report.drifted)}</strong>. {drifted} of {tested} "
        f"tested columns drifted ({share}; the dataset drifts from {report.drift_share:.0%}). "
        f"Mode: {escape(report.mode)}."
    )


def _row(result: ColumnDrift) -> str:
    cells = [
        escape(result.column),
        escape(result.kind),
        escape(result.method or "-"),
        _number(result.statistic),
        _number(result.p_value),
        _number(result.threshold),
        _verdict_text(result.drifted),
        escape(result.reason or "; ".join(result.notes)),
    ]
    numeric = {3, 4, 5}
    tds = "".join(
        f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
        for i, c in enumerate(cells)
    )
    css = ' class="drifted"' if result.drifted else ""
    return f"<tr{css}>{tds}</tr>"


def _table(report: DriftReport) -> str:
    heads = ("column", "type", "method", "statistic", "p-value", "threshold", "verdict", "notes")
    head = "".join(f"<th>{h}</th>" for h in heads)
    rows = "\n".join(_row(r) for r in report.columns.values())
    return f'<table class="columns"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def _plot(name: str, hist: Histogram) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if hist.numeric:
        ax.stairs(hist.reference, hist.labels, label="reference", color=_REFERENCE_COLOR, lw=1.5)
        ax.stairs(hist.current, hist.labels, label="current", color=_CURRENT_COLOR, lw=1.5)
    else:
        positions = range(len(hist.labels))
        left, right = [p - 0.2 for p in positions], [p + 0.2 for p in positions]
        ax.bar(left, hist.reference, 0.4, label="reference", color=_REFERENCE_COLOR)
        ax.bar(right, hist.current, 0.4, label="current", color=_CURRENT_COLOR)
        ax.set_xticks(list(positions), [str(label) for label in hist.labels], rotation=45)
    ax.set_title(name)
    ax.set_ylabel("share")
    ax.legend()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _figure(result: ColumnDrift) -> str:
    assert result.histogram is not None
    image = base64.b64encode(_plot(result.column, result.histogram)).decode("ascii")
    caption = (
        f"{escape(result.column)}: {escape(result.method or '')} "
        f"{_number(result.statistic)} (threshold {_number(result.threshold)})"
    )
    return (
        f'<figure class="drift-column" data-column="{escape(result.column)}">'
        f'<img alt="reference and current distribution of {escape(result.column)}" '
        f'src="data:image/png;base64,{image}"><figcaption>{caption}</figcaption></figure>'
    )


def render_html(report: DriftReport, *, title: str = "Data drift report") -> str:
    """The report as a self-contained HTML page, with one figure per drifted column."""
    drifted = [r for r in report.columns.values() if r.drifted and r.histogram is not None]
    figures = "\n".join(_figure(r) for r in drifted)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        f'<h1>{escape(title)}</h1>\n<p class="verdict">{_summary(report)}</p>\n'
        f"{_table(report)}\n<h2>Drifted columns</h2>\n"
        f'<section class="figures">\n{figures or "<p>None.</p>"}\n</section>\n</body></html>\n'
    )


def write_html(report: DriftReport, path: str | Path, *, title: str = "Data drift report") -> Path:
    """Write `render_html` to ``path`` (UTF-8) and return the path."""
    target = Path(path)
    target.write_text(render_html(report, title=title), encoding="utf-8")
    return target
