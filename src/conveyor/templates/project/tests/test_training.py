"""Level-2 CI for the training pipeline: it runs end to end on a sample of the data."""

import pandas as pd

from conveyor.testing import assert_pipeline_smoke


def test_the_pipeline_runs_on_a_sample(flights: pd.DataFrame) -> None:
    """A smoke test on 3,000 flights in a temporary store: every stage runs, the gate decides."""
    from training import training

    result = assert_pipeline_smoke(training, flights, params={"n_trials": 1})
    outcome = result.outputs["register_model"]
    assert outcome["registered"] in (True, False)
    assert outcome["reasons"], "the gate says why"
