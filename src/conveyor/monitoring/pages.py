"""Monitor pages people read: one evaluation, and a monitor's history, as self-contained HTML.

An evaluation's page shows its numbers (rows, serving, label coverage, quality),
its alerts, the drift table with the reference and current distribution of each
drifted column drawn over each other, the drift share over time and the quality
over time across the monitor's stored evaluations. Charts are inline SVG
(`conveyor.monitoring.charts`): no network, no other file, milliseconds per page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from conveyor.monitoring.charts import distribution_svg, series_svg
from conveyor.monitoring.report import _STYLE, _summary, _table

if TYPE_CHECKING:
    from conveyor.core.loop import Evaluation, NewAlert
    from conveyor.monitoring.results import ColumnDrift, DriftReport

__all__ = ["latest_per_window", "render_evaluation", "render_history"]

MAX_FIGURES = 12
_EXTRA_STYLE = """
.alert-critical { color: #b00020; } .alert-warning { color: #9a6700; }
svg { max-width: 100%; height: auto; }
"""


def latest_per_window(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """The newest evaluation of each window (re-evaluations replace older ones), by time."""
    newest: dict[tuple[int, int], Evaluation] = {}
    for e in evaluations:
        key = (e.window_start, e.window_end)
        if key not in newest or (e.created_at, e.id) >= (newest[key].created_at, newest[key].id):
            newest[key] = e
    return [newest[k] for k in sorted(newest)]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _figure(result: ColumnDrift) -> str:
    assert result.histogram is not None
    caption = (
        f"{escape(result.column)}: {escape(result.method or '')} "
        f"{_number(result.statistic)} (threshold {_number(result.threshold)})"
    )
    return (
        f'<figure class="drift-column" data-column="{escape(result.column)}">'
        f"{distribution_svg(result.column, result.histogram)}"
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _over_time(history: Sequence[Evaluation]) -> str:
    windows = latest_per_window(history)
    if not windows:
        return "<p>No evaluations yet.</p>"
    times = [_when(e.window_start) for e in windows]
    drift = {"drift share": [e.drift_share for e in windows]}
    names = sorted({k for e in windows for k in (e.metrics.get("quality") or {})})
    quality: dict[str, list[float | None]] = {
        n: [(e.metrics.get("quality") or {}).get(n) for e in windows] for n in names
    }
    quality["label coverage"] = [e.metrics.get("coverage") for e in windows]
    return (
        '<section class="over-time"><h2>Over time</h2>\n'
        f"{series_svg('drift share of input columns', times, drift)}\n"
        f"{series_svg('quality (labelled rows) and label coverage', times, quality)}\n"
        "</section>"
    )


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else escape(str(value))


def _facts(e: Evaluation) -> str:
    m = e.metrics
    rows = [
        ("window", f"{_when(e.window_start)} - {_when(e.window_end)} UTC"),
        ("status", e.status),
        ("version", m.get("version")),
        ("rows", m.get("rows")),
        ("requests", m.get("requests")),
        (
            "latency p50 / p99 (ms)",
            f"{_number(m.get('latency_p50_ms'))} / {_number(m.get('latency_p99_ms'))}",
        ),
        ("error rate", m.get("error_rate")),
        ("labelled rows", m.get("labelled_rows")),
        ("label coverage", m.get("coverage")),
        ("label delay p50 (ms)", (m.get("label_delay_ms") or {}).get("p50")),
        *((f"quality: {k}", v) for k, v in (m.get("quality") or {}).items()),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{_number(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in m.get("notes") or [])
    return f'<table class="facts">{body}</table>' + (f"<ul>{notes}</ul>" if notes else "")


def _alerts(alerts: Sequence[NewAlert]) -> str:
    if not alerts:
        return "<p>No alerts.</p>"
    items = "".join(
        f'<li class="alert-{escape(a.severity)}">[{escape(a.rule)}] {escape(a.message)}</li>'
        for a in alerts
    )
    return f"<ul>{items}</ul>"


def _drift_section(title: str, report: DriftReport | None, figures: bool) -> str:
    if report is None:
        return ""
    parts = [
        f"<h2>{escape(title)}</h2>",
        f'<p class="verdict">{_summary(report)}</p>',
        _table(report),
    ]
    if figures:
        drifted = [r for r in report.columns.values() if r.drifted and r.histogram is not None]
        parts.append("\n".join(_figure(r) for r in drifted[:MAX_FIGURES]) or "<p>None drifted.</p>")
        if len(drifted) > MAX_FIGURES:
            parts.append(f"<p>{len(drifted) - MAX_FIGURES} more drifted columns not drawn.</p>")
    return "\n".join(parts)


def render_evaluation(
    evaluation: Evaluation,
    *,
    drift: DriftReport | None = None,
    predictions: DriftReport | None = None,
    skew: DriftReport | None = None,
    history: Sequence[Evaluation] = (),
    alerts: Sequence[NewAlert] = (),
) -> str:
    """One evaluation as a self-contained HTML page."""
    title = f"Monitor {evaluation.monitor}: {_when(evaluation.window_start)} UTC"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}{_EXTRA_STYLE}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{_facts(evaluation)}\n<h2>Alerts</h2>\n{_alerts(alerts)}\n"
        f"{_drift_section('Input drift', drift, True)}\n"
        f"{_drift_section('Prediction drift', predictions, True)}\n"
        f"{_drift_section('Training-serving skew', skew, False)}\n"
        f"{_over_time(history)}\n</body></html>\n"
    )


def render_history(monitor: str, evaluations: Sequence[Evaluation]) -> str:
    """A monitor's evaluations over time (drift share, quality, coverage) as an HTML page."""
    windows = latest_per_window(evaluations)
    head = ("window (UTC)", "status", "rows", "drift share", "coverage", "quality", "alerts")
    rows = []
    for e in windows:
        quality = ", ".join(
            f"{k} {_number(v)}" for k, v in (e.metrics.get("quality") or {}).items()
        )
        cells = (
            _when(e.window_start),
            e.status,
            e.metrics.get("rows"),
            e.drift_share,
            e.metrics.get("coverage"),
            quality or "-",
            ", ".join(e.metrics.get("alerts") or []) or "-",
        )
        rows.append("<tr>" + "".join(f"<td>{_number(c)}</td>" for c in cells) + "</tr>")
    table = (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    title = f"Monitor {monitor}: history"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}{_EXTRA_STYLE}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{_over_time(evaluations)}\n<h2>Windows</h2>\n{table}\n"
        "</body></html>\n"
    )
