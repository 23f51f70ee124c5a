"""Drift verdicts against rules computed independently with scipy, and every kind of bad input."""

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

from conveyor.errors import ValidationError
from conveyor.monitoring import Profile, Reference, drift, profile

TOL = {"rel": 1e-9, "abs": 1e-12}


# --- the rules, computed with scipy on the cleaned columns (Evidently's defaults) -------------


def _clean(series: pd.Series) -> pd.Series:
    return series.replace([np.inf, -np.inf], np.nan).dropna()


def _shares(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(ref) | set(cur), key=str)
    rc, cc = ref.value_counts(), cur.value_counts()
    return (
        np.array([rc.get(k, 0) for k in keys]) / len(ref),
        np.array([cc.get(k, 0) for k in keys]) / len(cur),
    )


def expected(ref: pd.Series, cur: pd.Series, numeric: bool) -> tuple[str, float, bool]:
    """(method, statistic or p-value, drifted) the way Evidently's preset decides."""
    ref, cur = _clean(ref), _clean(cur)
    n_values = pd.concat([ref, cur]).nunique()
    if len(ref) <= 1000:
        if numeric and n_values > 5:
            p = stats.ks_2samp(ref, cur).pvalue
            return "ks", p, p <= 0.05
        p_ref, p_cur = _shares(ref, cur)
        if n_values > 2:
            p = stats.chisquare(p_cur * len(cur), p_ref * len(cur)).pvalue
            return "chisquare", p, p < 0.05
        first = sorted(set(ref) | set(cur), key=str)[0]
        p1, p2 = (ref != first).mean(), (cur != first).mean()
        pooled = (p1 * len(ref) + p2 * len(cur)) / (len(ref) + len(cur))
        z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / len(ref) + 1 / len(cur)))
        p = 2 * (1 - stats.norm.cdf(abs(z)))
        return "z", p, p < 0.05
    if numeric and n_values > 5:
        w = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        return "wasserstein", w, w >= 0.1
    js = distance.jensenshannon(*_shares(ref, cur))
    return "jensenshannon", js, js >= 0.1


@pytest.mark.parametrize(("ref_rows", "cur_rows"), [(5000, 4000), (600, 700), (900, 90)])
def test_verdicts_and_statistics_follow_the_rules(make, ref_rows, cur_rows):
    ref, cur = make(ref_rows, seed=1), make(cur_rows, shift=0.3, seed=2)
    report = drift(ref, cur)
    for name in ("normal", "lognormal", "integer", "few", "category", "flag"):
        numeric = name in ("normal", "lognormal", "integer", "few")
        method, value, drifted = expected(ref[name], cur[name], numeric)
        result = report.columns[name]
        assert result.method == method, name
        got = result.p_value if result.p_value is not None else result.statistic
        assert got == pytest.approx(value, **TOL), name
        assert result.drifted == drifted, name
        assert result.error_bound == 0.0
    assert report.columns["when"].drifted is None
    assert "datetime" in report.columns["when"].reason


def test_a_known_shift_is_found_and_no_shift_is_not(make):
    ref = make(20_000, seed=1)
    assert drift(ref, make(20_000, seed=2)).drifted_columns == []
    shifted = drift(ref, make(20_000, shift=0.6, seed=2))
    assert {"normal", "category"} <= set(shifted.drifted_columns)


@pytest.mark.parametrize(
    ("values", "method"),
    [
        (np.arange(500) % 7, "ks"),
        (np.arange(500) % 4, "chisquare"),
        (np.arange(500) % 2, "z"),
        (np.arange(5000) % 7, "wasserstein"),
        (np.arange(5000) % 5, "jensenshannon"),
    ],
)
def test_default_method_for_numbers_by_size_and_distinct_values(values, method):
    frame = pd.DataFrame({"x": values.astype(float)})
    assert drift(frame, frame).columns["x"].method == method


def test_distinct_values_count_in_both_windows():
    ref = pd.DataFrame({"x": [0.0, 1.0] * 100, "c": ["a", "b"] * 100})
    cur = pd.DataFrame({"x": [0.0, 1.0, 2.0] * 50, "c": ["a", "b", "c"] * 50})
    report = drift(ref, cur)
    assert report.columns["x"].method == "chisquare"
    assert report.columns["c"].method == "chisquare"
    assert drift(ref, ref).columns["c"].method == "z"


# --- overrides --------------------------------------------------------------------------------


def test_methods_and_thresholds_can_be_chosen_per_column(frames):
    ref, cur = frames
    methods = {
        "normal": "ks",
        "lognormal": "psi",
        "category": "chisquare",
        "integer": "jensenshannon",
    }
    report = drift(ref, cur, methods, thresholds={"normal": 1e-300})
    assert {n: report.columns[n].method for n in methods} == methods
    assert report.columns["normal"].threshold == 1e-300
    psi = report.columns["lognormal"]
    assert psi.p_value is None
    assert psi.threshold == 0.1


def test_dataset_verdict_is_the_share_of_tested_columns(frames):
    ref, cur = frames
    report = drift(ref, cur, drift_share=0.2)
    tested = report.tested_columns
    assert "when" not in tested
    assert report.share_drifted == len(report.drifted_columns) / len(tested)
    assert report.drifted == (report.share_drifted >= 0.2)
    assert drift(ref, cur, drift_share=1.0).drifted is (len(report.drifted_columns) == len(tested))


def test_report_to_dict_is_json(frames):
    data = drift(*frames).to_dict(histograms=True)
    text = json.dumps(data)
    assert json.loads(text)["columns"]["normal"]["histogram"]["numeric"] is True
    assert data["number_of_columns"] == 7


# --- sketch mode --------------------------------------------------------------------------------


def test_sketch_mode_is_within_its_bounds_of_exact(make):
    ref, cur = make(60_000, seed=1), make(50_000, shift=0.05, seed=2)
    exact = drift(ref, cur, {"normal": "ks", "lognormal": "jensenshannon"})
    ref_profile = profile(ref, batch_rows=7000, k=512)
    cur_profile = profile(cur, batch_rows=9000, k=512)
    sketch = drift(
        ref_profile, cur_profile, {"normal": "ks", "lognormal": "jensenshannon"}, "sketch"
    )
    for name in ("normal", "lognormal", "integer"):
        e, s = exact.columns[name], sketch.columns[name]
        assert e.method == s.method
        assert s.error_bound is not None
        assert abs(e.statistic - s.statistic) <= s.error_bound + 1e-12, name
    for name in ("category", "flag", "few"):  # exact counts survive in the profile
        e, s = exact.columns[name], sketch.columns[name]
        assert (s.statistic, s.error_bound) == (pytest.approx(e.statistic, **TOL), 0.0)


def test_sketch_mode_from_stored_profiles_and_raw_data_agree(frames):
    ref, cur = frames
    stored = Profile.from_bytes(profile(ref).to_bytes())
    one = drift(stored, cur, mode="sketch").to_dict()
    two = drift(ref, cur, mode="sketch").to_dict()
    assert one == two


def test_small_profiles_give_exact_results(make):
    ref, cur = make(800, seed=1), make(300, shift=0.3, seed=2)
    exact = drift(ref, cur).to_dict()
    sketch = drift(profile(ref), profile(cur), mode="sketch").to_dict()
    for name, column in exact["columns"].items():
        other = sketch["columns"][name]
        if column["statistic"] is None:
            assert other["statistic"] is None
            continue
        assert other["statistic"] == pytest.approx(column["statistic"], **TOL), name
        assert other["p_value"] == pytest.approx(column["p_value"], **TOL), name
        assert other["drifted"] == column["drifted"]


def test_profiles_need_sketch_mode(frames):
    with pytest.raises(ValidationError, match="reference: a Profile holds sketches"):
        drift(profile(frames[0]), frames[1])


# --- inputs and the prepared reference ---------------------------------------------------------


def test_every_input_kind_gives_the_same_report(frames, parquet_pair):
    ref, cur = frames
    want = drift(ref, cur).to_dict()
    for a, b in [
        parquet_pair,
        (pa.Table.from_pandas(ref), pa.Table.from_pandas(cur)),
        (str(parquet_pair[0]), cur),
    ]:
        assert drift(a, b).to_dict() == want
    pl = pytest.importorskip("polars")
    assert drift(pl.from_pandas(ref), pl.from_pandas(cur)).to_dict() == want


def test_a_prepared_reference_is_reused(frames):
    ref, cur = frames
    prepared = Reference(ref)
    first = drift(prepared, cur).to_dict()
    assert set(prepared._samples) >= {"normal", "category"}
    sorted_normal = prepared.sample("normal")
    assert drift(prepared, cur).to_dict() == first == drift(ref, cur).to_dict()
    assert prepared.sample("normal") is sorted_normal


# --- bad input ----------------------------------------------------------------------------------


def test_an_empty_window_has_no_verdict(frames):
    ref, cur = frames
    report = drift(ref, cur.iloc[:0])
    assert report.drifted is None
    assert report.share_drifted is None
    assert all(r.drifted is None for r in report.columns.values())
    assert "no values in the current data" in report.columns["normal"].reason


def test_all_missing_constant_missing_and_retyped_columns(frames):
    ref, cur = (f.copy() for f in frames)
    ref["empty"] = np.nan
    cur["empty"] = 1.0
    ref["constant"] = cur["constant"] = 3.0
    ref["moved"], cur["moved"] = 3.0, 4.0
    ref["gone"] = 1.0
    cur["normal"] = cur["normal"].astype(str)
    report = drift(ref, cur)
    assert "no values in the reference data" in report.columns["empty"].reason
    assert report.columns["constant"].drifted is False
    assert report.columns["constant"].statistic == 0.0
    assert report.columns["moved"].drifted is True
    assert report.columns["gone"].reason == "missing from the current data"
    assert (
        report.columns["normal"].reason
        == "type changed: numeric in reference, categorical in current"
    )
    assert report.drifted is not None


def test_missing_and_infinite_values_are_left_out_and_noted(frames):
    ref, cur = (f.copy() for f in frames)
    dirty = cur.copy()
    dirty.loc[:99, "normal"] = np.nan
    dirty.loc[100:109, "normal"] = np.inf
    dirty.loc[:49, "category"] = None
    report = drift(ref, dirty)
    clean = drift(ref, dirty.replace([np.inf], np.nan).dropna(subset=["normal", "category"]))
    for name in ("normal", "category"):
        assert report.columns[name].statistic == pytest.approx(
            drift(ref[[name]], dirty[[name]].replace([np.inf], np.nan).dropna())
            .columns[name]
            .statistic,
            **TOL,
        )
    assert report.columns["normal"].current_size == len(cur) - 110
    assert any("110 missing or infinite current" in n for n in report.columns["normal"].notes)
    assert clean.columns["normal"].drifted == report.columns["normal"].drifted


def test_new_categories_drift_and_are_named():
    ref = pd.DataFrame({"c": ["a", "b", "c"] * 100})
    cur = pd.DataFrame({"c": ["a", "b", "c", "zzz"] * 75})
    result = drift(ref, cur).columns["c"]
    assert result.method == "chisquare"
    assert (result.statistic, result.p_value, result.drifted) == (math.inf, 0.0, True)
    assert any("new categories in current: zzz" in note for note in result.notes)
    assert drift(ref, cur, {"c": "jensenshannon"}).columns["c"].statistic > 0


def test_unsupported_types_are_reported_not_tested():
    frame = pd.DataFrame({"x": [1.0, 2.0], "td": pd.to_timedelta([1, 2], "s")})
    result = drift(frame, frame).columns["td"]
    assert result.drifted is None
    assert result.kind == "unsupported"
    assert "is not monitored" in result.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": {"normal": "magic"}}, "normal: unknown drift method 'magic'"),
        ({"methods": {"category": "ks"}}, "category: method 'ks' does not apply to a categorical"),
        ({"methods": {"nope": "ks"}}, "nope: is not a column of the reference"),
        ({"thresholds": {"nope": 0.1}}, "nope: is not a column of the reference"),
        ({"columns": ["nope"]}, "nope: is not a column of the reference"),
        ({"mode": "fast"}, "mode: must be 'exact' or 'sketch'"),
        ({"drift_share": 0}, "drift_share: must be in"),
    ],
)
def test_bad_arguments_name_the_field(frames, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        drift(*frames, **kwargs)


def test_columns_limit_the_report(frames):
    report = drift(*frames, columns=["normal", "flag"])
    assert list(report.columns) == ["normal", "flag"]
