import numpy as np
import pandas as pd
import pytest

from conveyor.monitoring import ColumnDrift, DriftReport, drift
from conveyor.monitoring.results import HISTOGRAM_BINS, HISTOGRAM_CATEGORIES


def _result(name, drifted):
    return ColumnDrift(name, "numeric", "ks", 0.1, 0.5, 0.05, drifted)


def test_share_counts_only_columns_with_a_verdict():
    results = [_result("a", True), _result("b", False), _result("c", None), _result("d", True)]
    report = DriftReport.from_columns(results, mode="exact", drift_share=0.6)
    assert report.share_drifted == pytest.approx(2 / 3)
    assert report.drifted is True
    assert report.drifted_columns == ["a", "d"]
    assert report.tested_columns == ["a", "b", "d"]
    data = report.to_dict()
    assert (data["number_of_columns"], data["number_of_tested_columns"]) == (4, 3)
    assert "histogram" not in data["columns"]["a"]


def test_no_tested_column_means_no_dataset_verdict():
    report = DriftReport.from_columns([_result("a", None)], mode="sketch", drift_share=0.5)
    assert (report.share_drifted, report.drifted) == (None, None)


def test_numeric_histograms_share_the_same_bins():
    ref = pd.DataFrame({"x": np.linspace(0, 1, 1000)})
    cur = pd.DataFrame({"x": np.linspace(0.5, 2, 500)})
    hist = drift(ref, cur).columns["x"].histogram
    assert hist.numeric
    assert len(hist.labels) == HISTOGRAM_BINS + 1
    assert (hist.labels[0], hist.labels[-1]) == (0.0, 2.0)
    assert sum(hist.reference) == pytest.approx(1)
    assert sum(hist.current) == pytest.approx(1)


def test_categorical_histograms_keep_the_top_categories_and_the_rest():
    ref = pd.DataFrame({"c": [f"k{i}" for i in range(30)] * 10})
    cur = pd.DataFrame({"c": ["k0"] * 100 + ["new"] * 50})
    hist = drift(ref, cur).columns["c"].histogram
    assert not hist.numeric
    assert hist.labels[0] == "k0"
    assert "new" in hist.labels
    assert hist.labels[-1] == "(other)"
    assert len(hist.labels) == HISTOGRAM_CATEGORIES + 1
    assert sum(hist.reference) == pytest.approx(1)
    assert sum(hist.current) == pytest.approx(1)
