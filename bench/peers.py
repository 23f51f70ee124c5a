"""The peer tools' virtual environment (MLflow), kept apart from conveyor's.

    python bench/peers.py ensure   # create .venv-peers with mlflow if missing; print its python
    python bench/peers.py python   # print the python path (no checks)
    python bench/peers.py ensure-zenml   # create .venv-zenml with ZenML (pipeline benchmark)

``CONVEYOR_PEERS_PYTHON=/path/to/python`` uses an existing interpreter instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MLFLOW_VERSION = "3.17.2"
# psutil: the peers' scripts read each server's CPU time and RSS with it.
REQUIREMENTS = [f"mlflow=={MLFLOW_VERSION}", "psutil"]
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-peers"
STAMP = VENV / f".installed-mlflow-{MLFLOW_VERSION}-psutil"
OVERRIDE = "CONVEYOR_PEERS_PYTHON"


def peers_python() -> Path:
    """The interpreter that has the peer tools (``CONVEYOR_PEERS_PYTHON`` wins)."""
    override = os.environ.get(OVERRIDE)
    return Path(override) if override else VENV / "bin" / "python"


def ensure() -> Path:
    """Create the venv and install MLflow unless the stamp says it is done; return its python."""
    python = peers_python()
    if os.environ.get(OVERRIDE):
        if not python.exists():
            raise SystemExit(f"{OVERRIDE}={python} does not exist")
        return python
    if STAMP.exists() and python.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    STAMP.touch()
    return python


ZENML_VERSION = "0.98.0"
ZENML_REQUIREMENTS = [f"zenml[local]=={ZENML_VERSION}", "pandas", "pyarrow"]
ZENML_VENV = ROOT / ".venv-zenml"
ZENML_STAMP = ZENML_VENV / f".installed-zenml-{ZENML_VERSION}"
ZENML_OVERRIDE = "CONVEYOR_ZENML_PYTHON"


def ensure_zenml() -> Path:
    """Create ``.venv-zenml`` with ZenML (local extras), pandas and pyarrow unless stamped.

    ZenML's pins conflict with conveyor's and MLflow's, so it has its own venv, made
    only when the pipeline benchmark runs. ``CONVEYOR_ZENML_PYTHON=/path/to/python``
    uses an interpreter that already has it. Returns that python.
    """
    override = os.environ.get(ZENML_OVERRIDE)
    if override:
        if not Path(override).exists():
            raise SystemExit(f"{ZENML_OVERRIDE}={override} does not exist")
        return Path(override)
    python = ZENML_VENV / "bin" / "python"
    if ZENML_STAMP.exists() and python.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ZENML_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *ZENML_REQUIREMENTS], check=True)
    ZENML_STAMP.touch()
    return python


def main(argv: list[str]) -> int:
    commands = {"ensure": ensure, "python": peers_python, "ensure-zenml": ensure_zenml}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    print(commands[argv[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


EVIDENTLY_VERSION = "0.7.23"
EVIDENTLY_REQUIREMENTS = [
    f"evidently=={EVIDENTLY_VERSION}",
    "pandas<3",
    "scipy",
    "numpy",
    "pyarrow",
]
EVIDENTLY_VENV = ROOT / ".venv-evidently"
EVIDENTLY_STAMP = EVIDENTLY_VENV / f".installed-evidently-{EVIDENTLY_VERSION}"
EVIDENTLY_OVERRIDE = "CONVEYOR_EVIDENTLY_PYTHON"


def ensure_evidently() -> Path:
    """Create ``.venv-evidently`` with Evidently (which needs pandas<3) unless stamped; its python.

    ``CONVEYOR_EVIDENTLY_PYTHON=/path/to/python`` uses an interpreter that already has it.
    """
    override = os.environ.get(EVIDENTLY_OVERRIDE)
    if override:
        if not Path(override).exists():
            raise SystemExit(f"{EVIDENTLY_OVERRIDE}={override} does not exist")
        return Path(override)
    python = EVIDENTLY_VENV / "bin" / "python"
    if EVIDENTLY_STAMP.exists() and python.exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *EVIDENTLY_REQUIREMENTS], check=True)
    EVIDENTLY_STAMP.touch()
    return python
