"""Helpers and contract suites for testing conveyor backends and users' ML code.

Users' ML CI (see `conveyor.testing.assertions`; fixtures in `conveyor.testing.plugin`,
hypothesis strategies in `conveyor.testing.strategies`)::

    from conveyor.testing import assert_converges, assert_no_nan

Backend authors run the contract suites (``artifact_contract``, ``metadata_contract``,
``model_store_contract``) against their store.
"""

from conveyor.testing.assertions import (
    Convergence,
    assert_converges,
    assert_matches_schema,
    assert_no_nan,
    assert_pipeline_smoke,
    temporary_store,
)

__all__ = [
    "Convergence",
    "assert_converges",
    "assert_matches_schema",
    "assert_no_nan",
    "assert_pipeline_smoke",
    "temporary_store",
]
