"""
A built wheel of outpost, on its own: no checkout beside it, only its dependencies.
"""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What building the wheel reads from the checkout.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
RULES = Path("_utils") / "outpost_release.py"


def build_wheel(tmp_path):
    """Build from a copy of what the wheel needs, so the checkout gets no build/ or egg-info."""
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "outpost", source / "outpost", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in BUILD_INPUTS:
        shutil.copy(REPO / name, source / name)
    (source / RULES).parent.mkdir()
    shutil.copy(REPO / RULES, source / RULES)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("outpost-*.whl")
    return wheel


@pytest.mark.slow
def test_an_installed_wheel_runs_without_the_checkout(tmp_path):
    """The wheel held no _utils/outpost_release.py, which outpost/rules.py read from the
    checkout, so a non-editable install could not run any command."""
    wheel = build_wheel(tmp_path)
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    # -S: no .pth files, so the venv's editable install of the checkout stays out of sys.path.
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {"PYTHONPATH": ":".join([str(installed), *sorted(dependencies)]), "PATH": "/usr/bin:/bin"}
    probe = (
        "import outpost.cli, outpost.rules; "
        "print(outpost.rules.RELEASE_LIBRARY); "
        "print(outpost.rules.version_problem('1.2.3'))"
    )

    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(installed / "outpost" / "outpost_release.py"), "None"]
    packaged = (installed / "outpost" / "outpost_release.py").read_bytes()
    assert packaged == (REPO / RULES).read_bytes()
