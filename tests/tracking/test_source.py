import subprocess

from conveyor.tracking.source import detect_source


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_outside_git(tmp_path):
    assert detect_source(tmp_path).git_sha is None


def test_clean_and_dirty_trees(tmp_path):
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    for repo in (clean, dirty):
        repo.mkdir()
        _git(repo, "init", "-q")
        (repo / "train.py").write_text("print(1)\n")
        _git(repo, "add", ".")
        _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    (dirty / "train.py").write_text("print(2)\n")
    c, d = detect_source(clean), detect_source(dirty)
    assert len(c.git_sha) == 40
    assert not c.dirty
    assert len(d.git_sha) == 40
    assert d.dirty
    assert len(d.diff_hash) == 64
