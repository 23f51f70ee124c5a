"""The lifecycle package: its exports, stages loaded on first use, serializers registered."""

import sys
import types

import pandas as pd
import pytest

import conveyor.lifecycle as lc
from conveyor.profiling import Profile
from conveyor.runtime.serializers import get_serializer, serializer_for_type


def test_every_eager_export_is_there():
    for name in set(lc.__all__) - set(lc._LAZY):
        assert getattr(lc, name) is not None, name
    assert set(lc._LAZY) <= set(lc.__all__)
    assert set(lc.__all__) <= set(dir(lc))


@pytest.fixture
def fake_stage(monkeypatch):
    """A stage module ``conveyor.lifecycle._fake_stage`` defining ``fake_stage``."""
    name = "conveyor.lifecycle._fake_stage"
    module = types.ModuleType(name)

    def fake_stage() -> str:
        return "ran"

    module.fake_stage = fake_stage
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(lc._LAZY, "fake_stage", (name, "fake_stage"))
    yield module
    lc.__dict__.pop("fake_stage", None)


def test_a_stage_is_loaded_on_first_use(fake_stage):
    assert "fake_stage" not in vars(lc)
    assert lc.fake_stage() == "ran"
    assert vars(lc)["fake_stage"] is fake_stage.fake_stage


def test_a_stage_keeps_its_name_when_its_module_loads_first(fake_stage):
    # What the import system does when `conveyor.lifecycle._fake_stage` is imported:
    setattr(lc, "fake_stage", fake_stage)  # noqa: B010
    assert lc.fake_stage is fake_stage.fake_stage
    assert sys.modules["conveyor.lifecycle._fake_stage"] is fake_stage


def test_other_modules_are_set_as_usual():
    other = types.ModuleType("conveyor.lifecycle._other")
    setattr(lc, "_other", other)  # noqa: B010
    try:
        assert lc._other is other
    finally:
        del lc.__dict__["_other"]


def test_a_stage_whose_module_is_not_written_yet_is_an_attribute_error(monkeypatch):
    monkeypatch.setitem(lc._LAZY, "later", ("conveyor.lifecycle._not_yet", "later"))
    assert not hasattr(lc, "later")
    with pytest.raises(AttributeError, match=r"no module conveyor\.lifecycle\._not_yet"):
        lc.later  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        lc.nothing  # noqa: B018


def test_a_missing_dependency_of_a_stage_is_not_hidden(monkeypatch):
    monkeypatch.setitem(lc._LAZY, "deep", ("conveyor.lifecycle._absent_pkg.deep", "deep"))
    with pytest.raises(ModuleNotFoundError, match="_absent_pkg"):
        lc.deep  # noqa: B018


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
