"""
``outpost release build``: reproducible zipapps, their manifests, and the zipapps running.

Each build runs pip against the package index and takes a couple of seconds; builds that only
need to exist come from ``build_hello``'s session cache.
"""

import datetime
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# The checkout's outpost and tests.support, whichever way pytest was started.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from outpost.build import BadArgument, build_release  # noqa: E402 (needs the path above)
from outpost.cli import main  # noqa: E402
from tests.support.apps import build_hello, free_port, hello_source, running_pyz  # noqa: E402


def read_json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- reproducibility and the manifest ---------------------------------------------------------


def test_same_source_builds_the_same_bytes(tmp_path):
    first = build_hello(tmp_path, "1.0.0", cache=False)
    second = build_hello(tmp_path, "1.0.0", cache=False)

    assert first["path"] != second["path"]
    assert first["sha256"] == second["sha256"]
    assert first["shiv_build_id"] == second["shiv_build_id"]
    assert Path(first["path"]).read_bytes() == Path(second["path"]).read_bytes()


def test_cli_builds_what_the_function_builds(tmp_path):
    """The console script and build_release are one build: same bytes, manifest on stdout."""
    expected = build_hello(tmp_path, "1.0.0")
    source = hello_source(tmp_path, "1.0.0")
    out = tmp_path / "cli-dist"

    result = subprocess.run(
        [sys.executable, "-m", "outpost", "release", "build", str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )

    printed = json.loads(result.stdout)
    assert printed["sha256"] == expected["sha256"]
    assert printed["path"] == str(out / "outpost-hello-1.0.0.pyz")


def test_manifest_describes_the_zipapp(tmp_path):
    manifest = build_hello(tmp_path, "1.0.0")
    pyz = Path(manifest["path"])

    assert pyz.name == manifest["file"] == "outpost-hello-1.0.0.pyz"
    assert manifest["name"] == "outpost-hello"
    assert manifest["version"] == "1.0.0"
    assert manifest["sha256"] == hashlib.sha256(pyz.read_bytes()).hexdigest()
    assert manifest["size"] == pyz.stat().st_size
    assert manifest["entry_point"] == "outpost_hello.__main__:main"
    assert manifest["python_requires"] == ">=3.10"
    built_at = datetime.datetime.fromisoformat(manifest["built_at"])
    assert built_at.utcoffset() == datetime.timedelta(0)

    with zipfile.ZipFile(pyz) as archive:
        environment = json.loads(archive.read("environment.json"))
    assert manifest["shiv_build_id"] == environment["build_id"]
    assert environment["entry_point"] == manifest["entry_point"]
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")

    written = json.loads(Path(manifest["manifest_path"]).read_text(encoding="utf-8"))
    assert written == {k: v for k, v in manifest.items() if k not in ("path", "manifest_path")}


def test_zipapp_carries_no_trace_of_the_build_machine(tmp_path):
    manifest = build_hello(tmp_path, "1.0.0")

    with zipfile.ZipFile(manifest["path"]) as archive:
        names = archive.namelist()
        records = b"".join(archive.read(n) for n in names if n.endswith(".dist-info/RECORD"))

    assert not [n for n in names if n.endswith("direct_url.json") or "/bin/" in n]
    assert not [n for n in names if n.endswith(".pyc")]
    assert b"direct_url.json" not in records
    assert b"../" not in records


def test_stale_build_output_in_the_source_does_not_ship(tmp_path):
    """setuptools reused a stale build/lib, so a data file renamed away still shipped."""
    source = hello_source(tmp_path, "1.1.0", data_file="welcome.txt")
    stale = source / "build" / "lib" / "outpost_hello" / "data"
    stale.mkdir(parents=True)
    (stale / "greeting.txt").write_text("from the last release\n", encoding="utf-8")

    manifest = build_release(source, out_dir=tmp_path / "dist")

    with zipfile.ZipFile(manifest["path"]) as archive:
        data = [n for n in archive.namelist() if "/outpost_hello/data/" in n]
    assert data == ["site-packages/outpost_hello/data/welcome.txt"]


# -- the zipapp running -----------------------------------------------------------------------


def test_zipapp_serves_its_version(tmp_path):
    manifest = build_hello(tmp_path, "1.0.0")
    port = free_port()

    with running_pyz(manifest["path"], ["--port", str(port)], port, tmp_path / "x") as app:
        health = app.get("/healthz")
        page = app.get("/")

    assert health == (200, json.dumps({"status": "ok", "app": "hello", "version": "1.0.0"}))
    assert page[0] == 200
    assert "1.0.0" in page[1]
    assert "greeting.txt" in page[1]

    requests = [line for line in read_json_lines(app.log_text()) if "path" in line]
    assert {"method": "GET", "path": "/healthz", "status": 200}.items() <= requests[-2].items()
    assert {"time", "level", "message"} <= requests[-2].keys()


def test_port_flag_wins_over_environment(tmp_path):
    manifest = build_hello(tmp_path, "1.0.0")
    flag_port, env_port = free_port(), free_port()

    args = ["--port", str(flag_port)]
    env = {"PORT": str(env_port)}
    with running_pyz(manifest["path"], args, flag_port, tmp_path / "x", env=env) as app:
        assert app.get("/healthz")[0] == 200


def test_port_from_environment(tmp_path):
    manifest = build_hello(tmp_path, "1.0.0")
    port = free_port()

    with running_pyz(manifest["path"], [], port, tmp_path / "x", env={"PORT": str(port)}) as app:
        assert app.get("/healthz")[0] == 200


def test_unhealthy_build_answers_503(tmp_path):
    manifest = build_hello(tmp_path, "1.0.1", healthy=False)
    port = free_port()

    with running_pyz(manifest["path"], ["--port", str(port)], port, tmp_path / "x") as app:
        status, body = app.get("/healthz")

    assert status == 503
    assert json.loads(body) == {"status": "failing", "app": "hello", "version": "1.0.1"}


def test_renamed_data_file_is_the_only_one(tmp_path):
    manifest = build_hello(tmp_path, "1.1.0", data_file="welcome.txt")
    port = free_port()

    with running_pyz(manifest["path"], ["--port", str(port)], port, tmp_path / "x") as app:
        status, page = app.get("/")

    assert status == 200
    assert "welcome.txt" in page
    assert "greeting.txt" not in page


# -- bad arguments ----------------------------------------------------------------------------


def run_cli(capsys, *argv):
    """Exit status and stderr of ``outpost`` run in this process."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "{tmp}/dist"], "give a SOURCE_DIR to build, or at least one --requirement"),
        (["{tmp}/missing", "--out", "{tmp}/dist"], "SOURCE_DIR: {tmp}/missing is not a folder"),
        (["{tmp}", "--out", "{tmp}/dist"], "has no pyproject.toml or setup.py"),
        (["{hello}", "--out", "{hello}/pyproject.toml"], "--out: {hello}/pyproject.toml exists"),
        (["{hello}", "--out", "{tmp}", "--entry-point", "main"], "--entry-point: 'main' is not"),
        (["{hello}", "--out", "{tmp}", "--python-requirement", "3.11"], "--python-requirement"),
        (["{hello}", "--out", "{tmp}", "--python-requirement", "<3"], "excludes Python"),
        (["--requirement", "datasette==", "--out", "{tmp}"], "--requirement: 'datasette=='"),
        (["{hello}", "--out", "{tmp}", "--entry-point", "a:b", "--console-script", "c"], "not al"),
    ],
)
def test_bad_argument_is_named_without_traceback(tmp_path, capsys, argv, message):
    hello = hello_source(tmp_path, "1.0.0")
    fill = {"tmp": tmp_path, "hello": hello}

    argv = [part.format(**fill) for part in argv]
    status, err = run_cli(capsys, "release", "build", *argv)

    assert status == 2
    assert message.format(**fill) in err
    assert "Traceback" not in err
    assert not (tmp_path / "dist").exists()


def test_unknown_console_script_lists_the_known_ones(tmp_path, capsys):
    source = hello_source(tmp_path, "1.0.0")

    status, err = run_cli(
        capsys, "release", "build", str(source), "--out", str(tmp_path), "--console-script", "nope"
    )

    assert status == 2
    assert "--console-script: no console script 'nope' is installed" in err
    assert "outpost-hello" in err


def test_uninstallable_requirement_fails_with_pip_output(tmp_path, capsys):
    spec = "outpost-no-such-distribution==1.0"

    status, err = run_cli(capsys, "release", "build", "--requirement", spec, "--out", str(tmp_path))

    assert status == 1
    assert f"pip could not install {spec}" in err
    assert "No matching distribution" in err
    assert "Traceback" not in err


def test_a_version_later_steps_refuse_is_refused_before_anything_is_written(tmp_path, capsys):
    """1.2.3-rc.1, which pip reads as 1.2.3rc1, was built; only scan refused it later."""
    source = hello_source(tmp_path, "1.2.3-rc.1")

    status, err = run_cli(capsys, "release", "build", str(source), "--out", str(tmp_path / "dist"))

    assert status == 1
    assert "outpost: error: version: '1.2.3rc1' (the project's version as pip reads it)" in err
    assert "give the project a plain version such as 1.2.3" in err
    assert "Traceback" not in err
    assert not (tmp_path / "dist").exists()


def test_build_release_raises_bad_argument(tmp_path):
    with pytest.raises(BadArgument, match="--entry-point and --console-script exclude"):
        build_release(tmp_path, out_dir=tmp_path, entry_point="a:b", console_script="c")


# -- a third-party app ------------------------------------------------------------------------


@pytest.mark.slow
def test_datasette_from_pypi_runs(tmp_path):
    manifest = build_release(
        requirements=["datasette==0.65.5"], console_script="datasette", out_dir=tmp_path / "dist"
    )
    port = free_port()

    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    with running_pyz(manifest["path"], args, port, tmp_path / "x") as app:
        status, body = app.get("/-/versions.json")

    assert (manifest["name"], manifest["version"]) == ("datasette", "0.65.5")
    assert manifest["file"] == "datasette-0.65.5.pyz"
    assert status == 200
    assert json.loads(body)["datasette"]["version"] == "0.65.5"
