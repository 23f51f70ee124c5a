import json


def test_info(project):
    data = json.loads(project.cli("db", "info", "--json").stdout)
    assert data["backend"] == "sqlite"
    assert data["revision"] == data["head"]
    assert data["rows"]["runs"] == 2
    assert data["rows"]["metric points"] == 4
    assert "rows: metric points" in project.cli("db", "info").stdout


def test_upgrade_is_idempotent(project):
    assert "already at revision" in project.cli("db", "upgrade").stdout


def test_upgrade_on_a_new_store(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "CONVEYOR_METADATA_URI": f"sqlite:///{tmp_path / 'new.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "migrated to revision" in done.stdout


def test_unsupported_uri_is_explained(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "CONVEYOR_METADATA_URI": "mysql://x@y/z"}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "db", "info"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "unsupported metadata URI" in done.stderr
