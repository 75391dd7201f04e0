"""
The example app as tests need it: any version, healthy or broken, with any data file name.

Import it as ``tests.support.apps``, with the repository root on ``sys.path`` (tests/conftest.py
puts it there).
"""

import atexit
import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from outpost.build import build_release

REPO = Path(__file__).resolve().parents[2]
HELLO_SOURCE = REPO / "examples" / "hello"
HELLO_DATA_FILE = "greeting.txt"
# The interpreter a client pins to run a release; outpost never relies on the shebang.
CLIENT_PYTHON = "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else sys.executable
HOST = "127.0.0.1"

BUILD_LEFTOVERS = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
# Finished builds of this test session, by their inputs: each build costs seconds of pip.
_builds = {}


def hello_source(tmp_path, version, healthy=True, data_file=HELLO_DATA_FILE, unhealthy_after=None):
    """
    Copy examples/hello into a new folder under ``tmp_path`` as release ``version``.

    ``healthy=False`` makes /healthz answer 503; ``unhealthy_after`` does so that many seconds
    after the app starts; ``data_file`` renames the shipped data file, and None leaves it out.
    Returns the folder.
    """
    source = Path(tempfile.mkdtemp(prefix=f"hello-{version}-", dir=tmp_path))
    shutil.copytree(HELLO_SOURCE, source, ignore=BUILD_LEFTOVERS, dirs_exist_ok=True)

    init = source / "outpost_hello" / "__init__.py"
    text = init.read_text(encoding="utf-8")
    text = replace_line(r'^__version__ = ".*"$', f'__version__ = "{version}"', text)
    text = replace_line(r"^HEALTHY = \w+$", f"HEALTHY = {bool(healthy)}", text)
    text = replace_line(r"^UNHEALTHY_AFTER = \w+$", f"UNHEALTHY_AFTER = {unhealthy_after!r}", text)
    init.write_text(text, encoding="utf-8")

    rename_data_file(source / "outpost_hello" / "data", data_file)
    return source


def replace_line(pattern, line, text):
    replaced, count = re.subn(pattern, lambda match: line, text, flags=re.MULTILINE)
    if count != 1:
        raise AssertionError(f"examples/hello: expected one line matching {pattern}, got {count}")
    return replaced


def rename_data_file(data_dir, data_file):
    shipped = data_dir / HELLO_DATA_FILE
    if data_file is None:
        shipped.unlink()
    elif data_file != HELLO_DATA_FILE:
        shipped.rename(data_dir / data_file)


def build_hello(
    tmp_path,
    version,
    healthy=True,
    data_file=HELLO_DATA_FILE,
    cache=True,
    unhealthy_after=None,
    **options,
):
    """
    Build hello ``version`` and return its manifest, with ``path`` to the .pyz under ``tmp_path``.

    ``options`` go to ``build_release``. With ``cache``, equal inputs are built once a session
    and each call gets its own copy of the files, so a test may damage them freely.
    """
    variant = {"healthy": healthy, "data_file": data_file, "unhealthy_after": unhealthy_after}
    if not cache:
        source = hello_source(tmp_path, version, **variant)
        return build_release(source, out_dir=fresh_dist_dir(tmp_path, version), **options)

    key = (version, json.dumps(variant, sort_keys=True), json.dumps(options, sort_keys=True))
    if key not in _builds:
        source = hello_source(session_cache(), version, **variant)
        out = fresh_dist_dir(session_cache(), version)
        _builds[key] = build_release(source, out_dir=out, **options)
    return copy_release(_builds[key], fresh_dist_dir(tmp_path, version))


def fresh_dist_dir(parent, version):
    return Path(tempfile.mkdtemp(prefix=f"dist-{version}-", dir=parent))


@functools.cache
def session_cache():
    folder = tempfile.mkdtemp(prefix="outpost-test-builds-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder)


def copy_release(manifest, out):
    pyz = shutil.copy2(manifest["path"], out)
    manifest_path = shutil.copy2(manifest["manifest_path"], out)
    return dict(manifest, path=str(pyz), manifest_path=str(manifest_path))


# -- running a release ------------------------------------------------------------------------


def free_port():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def http_get(url, timeout=5):
    """``(status, body)`` of a GET, error statuses included; OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


@dataclasses.dataclass
class RunningApp:
    process: subprocess.Popen
    port: int
    log_path: Path

    def url(self, path="/"):
        return f"http://{HOST}:{self.port}{path}"

    def get(self, path="/"):
        return http_get(self.url(path))

    def log_text(self):
        return self.log_path.read_text(encoding="utf-8")


@contextlib.contextmanager
def running_pyz(pyz, args, port, shiv_root, env=None, timeout=60):
    """
    Run a zipapp as a client does, with ``CLIENT_PYTHON`` and its own ``SHIV_ROOT``.

    Waits until something answers HTTP on ``port``, yields a ``RunningApp``, and stops the process
    on the way out. stdout and stderr go to ``app.log`` beside ``shiv_root``.
    """
    shiv_root = Path(shiv_root)
    shiv_root.mkdir(parents=True, exist_ok=True)
    log_path = shiv_root.parent / "app.log"
    child_env = {key: value for key, value in os.environ.items() if key != "PORT"}
    child_env.update(SHIV_ROOT=str(shiv_root), **(env or {}))

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [CLIENT_PYTHON, str(pyz), *args], stdout=log, stderr=subprocess.STDOUT, env=child_env
        )
    app = RunningApp(process, port, log_path)
    try:
        wait_until_answering(app, timeout)
        yield app
    finally:
        stop(process)


def wait_until_answering(app, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise AssertionError(f"the app exited with {app.process.returncode}:\n{app.log_text()}")
        with contextlib.suppress(OSError):
            app.get("/")
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing answered on port {app.port} in {timeout}s:\n{app.log_text()}")


def stop(process):
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
