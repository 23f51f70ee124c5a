from html.parser import HTMLParser

from conveyor.monitoring import drift
from conveyor.monitoring.report import render_html, write_html


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figures: list[str] = []
        self.images: list[str] = []
        self.rows = 0
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figures.append(attrs["data-column"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr":
            self.rows += 1
        for key in ("href", "src"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.links.append(attrs[key])


def test_one_figure_per_drifted_column_and_nothing_to_fetch(frames, tmp_path):
    report = drift(*frames)
    assert report.drifted_columns  # the fixture drifts
    path = write_html(report, tmp_path / "drift.html")
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    assert page.figures == report.drifted_columns
    assert len(page.images) == len(report.drifted_columns)
    assert all(src.startswith("data:image/png;base64,iVBOR") for src in page.images)
    assert page.links == []
    assert page.rows == 1 + len(report.columns)


def test_a_report_without_drift_says_so_and_escapes_names():
    import pandas as pd

    frame = pd.DataFrame({"<b>x</b>": range(100)})
    html = render_html(drift(frame, frame), title="t & t")
    assert "<title>t &amp; t</title>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>x</b>" not in html
    assert "<p>None.</p>" in html
