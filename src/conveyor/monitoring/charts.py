"""Small inline SVG charts for monitor pages: two distributions over each other, series over time.

Drawn as plain SVG text (no matplotlib) because a monitor renders a page for every
window it evaluates and matplotlib needs about 0.1 s per chart; these take
microseconds, need no network, and scale in any browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from conveyor.monitoring.results import Histogram

__all__ = ["CURRENT_COLOR", "REFERENCE_COLOR", "distribution_svg", "series_svg"]

REFERENCE_COLOR = "#4c72b0"
CURRENT_COLOR = "#dd8452"
_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")
_W, _H = 520, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 26, 40


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _frame(title: str, y_max: float, body: str, x_labels: str, legend: str) -> str:
    plot_h = _H - _TOP - _BOTTOM
    axes = (
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" '
        'stroke="#888"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_H - _BOTTOM}" stroke="#888"/>'
        f'<text x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">{_fmt(y_max)}</text>'
        f'<text x="{_LEFT - 4}" y="{_TOP + plot_h}" text-anchor="end">0</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="11" role="img">'
        f"<title>{escape(title)}</title>"
        f'<text x="{_W / 2}" y="14" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
        f"{axes}{body}{x_labels}{legend}</svg>"
    )


def _legend(names: Sequence[str], colors: Sequence[str]) -> str:
    items, x = [], _W - _RIGHT - 8
    for name, color in reversed(list(zip(names, colors, strict=True))):
        x -= 7 * len(name) + 20
        items.append(
            f'<rect x="{x}" y="{_TOP - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{_TOP + 1}">{escape(name)}</text>'
        )
    return "".join(items)


def _y(value: float, y_max: float) -> float:
    plot_h = _H - _TOP - _BOTTOM
    return _TOP + plot_h * (1 - (value / y_max if y_max > 0 else 0))


def distribution_svg(title: str, hist: Histogram) -> str:
    """Reference and current shares drawn over each other (steps for numbers, bars otherwise)."""
    y_max = max([*hist.reference, *hist.current, 1e-12]) * 1.05
    legend = _legend(["reference", "current"], [REFERENCE_COLOR, CURRENT_COLOR])
    width = _W - _LEFT - _RIGHT
    if hist.numeric:
        edges = [float(e) for e in hist.labels]
        low, span = edges[0], (edges[-1] - edges[0]) or 1.0
        xs = [_LEFT + width * (e - low) / span for e in edges]
        body = "".join(
            _steps(xs, shares, y_max, color)
            for shares, color in ((hist.reference, REFERENCE_COLOR), (hist.current, CURRENT_COLOR))
        )
        bottom = _H - _BOTTOM + 14
        labels = (
            f'<text x="{_LEFT}" y="{bottom}">{_fmt(edges[0])}</text>'
            f'<text x="{_W - _RIGHT}" y="{bottom}" text-anchor="end">{_fmt(edges[-1])}</text>'
        )
        return _frame(title, y_max, body, labels, legend)
    n = max(len(hist.labels), 1)
    slot = width / n
    bars: list[str] = []
    names: list[str] = []
    for i, label in enumerate(hist.labels):
        x = _LEFT + i * slot
        for j, (shares, color) in enumerate(
            ((hist.reference, REFERENCE_COLOR), (hist.current, CURRENT_COLOR))
        ):
            top = _y(shares[i], y_max)
            bars.append(
                f'<rect x="{x + slot * (0.1 + 0.4 * j):.1f}" y="{top:.1f}" '
                f'width="{slot * 0.4:.1f}" height="{_H - _BOTTOM - top:.1f}" fill="{color}"/>'
            )
        cx, cy = x + slot / 2, _H - _BOTTOM + 10
        text = escape(str(label)[:14])
        names.append(
            f'<text x="{cx:.1f}" y="{cy}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {cy})">{text}</text>'
        )
    return _frame(title, y_max, "".join(bars), "".join(names), legend)


def _steps(xs: Sequence[float], shares: Sequence[float], y_max: float, color: str) -> str:
    points = []
    for i, share in enumerate(shares):
        y = _y(share, y_max)
        points += [f"{xs[i]:.1f},{y:.1f}", f"{xs[i + 1]:.1f},{y:.1f}"]
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="1.6"/>'
    )


def series_svg(title: str, times: Sequence[str], series: dict[str, list[float | None]]) -> str:
    """Series over the same time points (labels ``times``), gaps where a value is None."""
    values = [v for vs in series.values() for v in vs if v is not None]
    y_max = max([*values, 1e-12]) * 1.05 if values else 1.0
    width = _W - _LEFT - _RIGHT
    n = len(times)

    def x(i: int) -> float:
        return _LEFT + (width * i / (n - 1) if n > 1 else width / 2)

    colors = [_PALETTE[i % len(_PALETTE)] for i in range(len(series))]
    body = []
    for (name, vs), color in zip(series.items(), colors, strict=True):
        points = [f"{x(i):.1f},{_y(v, y_max):.1f}" for i, v in enumerate(vs) if v is not None]
        dots = "".join(
            f'<circle cx="{x(i):.1f}" cy="{_y(v, y_max):.1f}" r="2.5" fill="{color}">'
            f"<title>{escape(name)} {escape(times[i])}: {_fmt(v)}</title></circle>"
            for i, v in enumerate(vs)
            if v is not None
        )
        line = (
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
            'stroke-width="1.5"/>'
        )
        body.append(line + dots)
    bottom = _H - _BOTTOM + 14
    labels = ""
    if n:
        labels = f'<text x="{_LEFT}" y="{bottom}">{escape(times[0])}</text>'
        if n > 1:
            labels += (
                f'<text x="{_W - _RIGHT}" y="{bottom}" text-anchor="end">{escape(times[-1])}</text>'
            )
    return _frame(title, y_max, "".join(body), labels, _legend(list(series), colors))
