import pytest

from conveyor.errors import ConfigError
from conveyor.settings import find_project, load_settings


def test_defaults_live_in_the_project(tmp_path):
    s = load_settings(tmp_path, env={})
    assert s.metadata_uri == f"sqlite:///{tmp_path.resolve() / '.conveyor' / 'conveyor.db'}"
    assert s.artifact_uri == str(tmp_path.resolve() / ".conveyor" / "artifacts")
    assert (s.experiment, s.run_grace_seconds, s.heartbeat_seconds) == ("Default", 30.0, 5.0)


def test_yaml_over_defaults_and_env_over_yaml(tmp_path):
    (tmp_path / "conveyor.yaml").write_text(
        "metadata_uri: sqlite:///state/meta.db\nartifact_uri: blobs\nrun_grace_seconds: 10\n"
        "pipelines: {train: x}\n"
    )
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)
    s = load_settings(nested, env={})
    assert s.project == tmp_path.resolve()
    assert s.metadata_uri == f"sqlite:///{tmp_path.resolve() / 'state' / 'meta.db'}"
    assert s.artifact_uri == str(tmp_path.resolve() / "blobs")
    assert s.run_grace_seconds == 10.0
    assert s.extra == {"pipelines": {"train": "x"}}
    env = {"CONVEYOR_ARTIFACT_URI": "memory://x", "CONVEYOR_RUN_GRACE_SECONDS": "2.5"}
    s = load_settings(nested, env=env)
    assert (s.artifact_uri, s.run_grace_seconds) == ("memory://x", 2.5)


def test_find_project_without_config(tmp_path):
    assert find_project(tmp_path) == tmp_path.resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run_grace_seconds: soon\n", "run_grace_seconds: must be a number"),
        ("run_grace_seconds: -1\n", "run_grace_seconds: must be greater than 0"),
        ("metadata_uri: ''\n", "metadata_uri: must be a non-empty string"),
        ("- a list\n", "must be a mapping"),
        ("key: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, message):
    (tmp_path / "conveyor.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, env={})


def test_bad_env_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="heartbeat_seconds"):
        load_settings(tmp_path, env={"CONVEYOR_HEARTBEAT_SECONDS": "0"})
