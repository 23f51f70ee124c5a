import pytest

from conveyor import errors


def test_every_error_is_a_conveyor_error_and_its_builtin():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.NotFoundError, KeyError)
    assert issubclass(errors.StateError, RuntimeError)
    assert issubclass(errors.ArtifactCorruptedError, OSError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ConveyorError)


def test_the_docstring_draws_every_error():
    for name in errors.__all__:
        assert name in errors.__doc__


def test_validation_error_names_field_and_rule():
    err = errors.ValidationError("max_depth", "must be positive")
    assert (err.field, err.rule, str(err)) == (
        "max_depth",
        "must be positive",
        "max_depth: must be positive",
    )


def test_filter_error_points_at_the_token():
    err = errors.FilterSyntaxError("metrics.auc >> 1", 13, "unexpected '>'")
    assert "position 13" in str(err)
    assert str(err).splitlines()[-1] == " " * 15 + "^"


def test_not_found_reads_plainly():
    with pytest.raises(KeyError) as info:
        raise errors.NotFoundError("no run with id 'x'")
    assert str(info.value) == "no run with id 'x'"
