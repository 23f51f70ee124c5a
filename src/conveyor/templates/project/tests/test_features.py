"""Feature logic: any flight the schema allows becomes finite numbers (property-based)."""

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from training import FEATURES

from conftest import feature_transform
from conveyor import lifecycle as lc
from conveyor.testing import assert_no_nan
from conveyor.testing.strategies import frames


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_transform_never_makes_nan(
    flights: pd.DataFrame, schema: lc.Schema, data: st.DataObject
) -> None:
    """Missing weather, unseen airports, extreme values: the features stay finite."""
    transform = feature_transform(schema).fit(flights[FEATURES])
    frame = data.draw(frames(schema, columns=FEATURES, max_rows=30))
    assert_no_nan(transform.transform(frame), name="features")


def test_the_sample_has_every_feature(flights: pd.DataFrame) -> None:
    """The features the pipeline trains on are all in the data."""
    assert set(FEATURES) <= set(flights.columns)
