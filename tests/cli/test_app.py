import subprocess
import sys

from conveyor import __version__


def test_version(project):
    assert project.cli("--version").stdout.strip() == f"conveyor {__version__}"


def test_help_teaches_every_group(project):
    out = project.cli("--help").stdout
    for word in ("runs", "artifacts", "db", "gc", "CONVEYOR_"):
        assert word in out


def test_help_imports_nothing_heavy():
    code = (
        "import sys; sys.argv=['conveyor','--help']\n"
        "from conveyor.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('sqlalchemy', 'pandas', 'pyarrow', 'fsspec', 'alembic')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_errors_are_one_line_not_a_traceback(project):
    done = project.cli("runs", "show", "ffffffff", ok=False)
    assert done.returncode == 1
    assert "no run id starts with 'ffffffff'" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2(project):
    done = project.cli("runs", "nope", ok=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
