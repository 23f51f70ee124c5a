"""The lifecycle package: its exports, stages loaded on first use, serializers registered."""

import subprocess
import sys

import pandas as pd
import pytest

import conveyor.lifecycle as lc
from conveyor.profiling import Profile
from conveyor.runtime.serializers import get_serializer, serializer_for_type


def test_every_export_resolves():
    for name in lc.__all__:
        assert getattr(lc, name) is not None, name
    assert dir(lc) == lc.__all__


def test_importing_the_package_loads_nothing_heavy():
    code = (
        "import sys, conveyor.lifecycle\n"
        "print(sorted(m for m in ('pandas', 'sklearn', 'pyarrow', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_stage_keeps_its_name_when_its_module_is_imported():
    import conveyor.lifecycle._train as module

    assert lc.train is module.train
    assert callable(lc.train)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        lc.nothing  # noqa: B018


def test_the_feature_transform_is_scikit_learns_column_transformer():
    from sklearn.compose import ColumnTransformer

    assert lc.FeatureTransform is ColumnTransformer


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (lc.Dataset, "conveyor.dataset"),
        (lc.Schema, "conveyor.schema"),
        (lc.AnomalyReport, "conveyor.anomalies"),
        (lc.Prepared, "conveyor.prepared"),
        (Profile, "conveyor.profile"),
    ],
)
def test_every_result_is_a_storable_step_output(cls, name):
    serializer = serializer_for_type(cls)
    assert serializer is not None
    assert serializer.name == name
    assert get_serializer(name) is serializer


def test_a_profile_round_trips_through_its_serializer():
    profile, _ = lc.analyze(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", None]}))
    serializer = get_serializer("conveyor.profile")
    back = serializer.load(serializer.dump(profile))
    assert isinstance(back, Profile)
    assert back.to_bytes() == profile.to_bytes()
