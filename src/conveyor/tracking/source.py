"""Which code a run came from: the git commit and a hash of the uncommitted diff."""

from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

from conveyor.core.entities import SourceVersion

__all__ = ["detect_source"]


def _git(cwd: Path, *args: str) -> bytes | None:
    try:
        # git from PATH, with fixed arguments: nothing here comes from users.
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=cwd,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@lru_cache(maxsize=8)
def detect_source(cwd: Path) -> SourceVersion:
    """The git commit of ``cwd`` and, if the tree is dirty, a sha256 of its diff.

    Read once per process and folder: a training script's code does not change
    under it, and git costs milliseconds that a thousand runs would feel.
    """
    sha = _git(cwd, "rev-parse", "HEAD")
    if sha is None:
        return SourceVersion()
    status = _git(cwd, "status", "--porcelain", "--untracked-files=normal") or b""
    if not status.strip():
        return SourceVersion(sha.decode().strip(), None)
    diff = _git(cwd, "diff", "HEAD", "--binary") or b""
    digest = hashlib.sha256(diff + b"\0" + status).hexdigest()
    return SourceVersion(sha.decode().strip(), digest)
