import subprocess
import sys

import yaml


def _init(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "init", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_writes_a_project(tmp_path):
    done = _init(tmp_path, "flights", "--no-data")
    assert done.returncode == 0, done.stderr
    root = tmp_path / "flights"
    for rel in ("conveyor.yaml", "README.md", "pipelines/training.py", "tests/test_training.py"):
        assert (root / rel).is_file(), rel
    settings = yaml.safe_load((root / "conveyor.yaml").read_text())
    assert settings["experiment"] == "flights"
    assert "def training(" in (root / "pipelines" / "training.py").read_text()
    assert not (root / "data").exists()


def test_init_lands_the_data(tmp_path):
    import pandas as pd

    assert _init(tmp_path, "demo").returncode == 0
    jan = pd.read_parquet(tmp_path / "demo" / "data" / "flights-2013-01.parquet")
    assert len(jan) > 20_000
    assert "dep_delay" not in jan.columns  # it leaks the answer
    assert set(jan["month"]) == {1}


def test_init_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    done = _init(tmp_path, "busy", "--no-data")
    assert done.returncode == 1
    assert "not empty" in done.stderr
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
