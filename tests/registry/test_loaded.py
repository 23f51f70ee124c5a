import numpy as np
import pytest

from conveyor.errors import StateError, ValidationError


@pytest.fixture
def loaded(registry, cancer, logistic):
    X, _ = cancer
    registry.register_model("cancer", logistic, X.head(5))
    return registry.load_model("cancer")


def test_a_loaded_model_knows_its_version_signature_and_example(loaded, cancer):
    X, _ = cancer
    assert repr(loaded) == "LoadedModel(cancer/1, format=skops)"
    assert [c.name for c in loaded.signature.columns] == list(X.columns)
    assert loaded.input_example.shape == (5, 30)
    np.testing.assert_array_equal(loaded.expected_output, loaded.predict(X.head(5)))
    assert loaded.has_predict_proba


def test_check_compares_the_example_with_its_expected_output(loaded):
    loaded.check()
    loaded.expected_output = 1 - loaded.expected_output
    with pytest.raises(StateError, match="does not reproduce its expected output"):
        loaded.check()


def test_input_is_validated_before_the_model_sees_it(loaded, cancer):
    X, _ = cancer
    with pytest.raises(ValidationError, match="column 'mean radius': must be numbers"):
        loaded.predict_proba(X.assign(**{"mean radius": "big"}))
