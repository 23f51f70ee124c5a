"""`PolicyDelivery`: a new version handed to delivery, stage by stage, as far as its policy goes."""

import numpy as np
import pytest

from conveyor.automation.handoff import PolicyDelivery
from conveyor.automation.triggers import parse_triggers
from conveyor.delivery import parse_deployments
from conveyor.errors import NotFoundError
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_loop_store, open_model_store

TRIGGER = parse_triggers([{"name": "new-data", "pipeline": "p.py:p"}])[0]


class Constant:
    def predict(self, rows):
        return np.zeros(len(rows))


@pytest.fixture
def stores(tmp_path):
    uri = f"sqlite:///{tmp_path / 'c.db'}"
    models, loop = open_model_store(uri), open_loop_store(uri)
    registry = Registry(models, open_artifact_store(str(tmp_path / "a")))
    registry.register_model("flights", Constant(), np.zeros((2, 1)), trusted=True)
    yield registry, loop
    loop.close()
    models.close()


def test_a_version_goes_stage_by_stage_and_stops_where_it_did_not_move(stores):
    registry, loop = stores
    registry.set_alias("flights", "staging", 1, reason="setup")
    hand_off = PolicyDelivery(registry, loop, parse_deployments(None))
    said = hand_off("flights/1", TRIGGER)
    assert said == "staging: flights/1 is already at staging"  # not moved: production not tried
    assert loop.list_checks("flights") == []


def test_an_unknown_version_is_an_error_and_the_policy_s_stages_are_followed(stores):
    registry, loop = stores
    with pytest.raises(NotFoundError):
        PolicyDelivery(registry, loop, {})("flights/9", TRIGGER)
    policies = parse_deployments({"flights": {"stages": ["production"]}})
    registry.set_alias("flights", "production", 1, reason="setup")
    assert PolicyDelivery(registry, loop, policies)("flights/1", TRIGGER) == (
        "production: flights/1 is already at production"
    )
