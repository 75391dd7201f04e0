"""
A release's first start extracts its zipapp into the release's own SHIV_ROOT. Two processes may do
that at once (a service restart racing a health probe's launch, say), and a start may be killed
half way. Neither may leave the release unable to start.
"""

import os
import pathlib
import signal
import subprocess
import time
import urllib.request
import zipfile

import pytest

from tests.conftest import app_python, free_port
from tests.support.apps import build_hello

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hello_pyz(tmp_path_factory):
    return pathlib.Path(build_hello(tmp_path_factory.mktemp("extract"), "2.0.0")["path"])


def start(pyz, shiv_root, port):
    env = dict(os.environ, SHIV_ROOT=str(shiv_root), PORT=str(port))
    return subprocess.Popen(
        [app_python(), str(pyz), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(port, process, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            time.sleep(0.05)
    return False


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def assert_extraction_intact(pyz, shiv_root):
    """Every site-packages member of the zipapp is on disk with its size."""
    (extracted,) = [path for path in shiv_root.iterdir() if not path.name.startswith(".")]
    with zipfile.ZipFile(pyz) as archive:
        for info in archive.infolist():
            if info.filename.startswith("site-packages/") and not info.is_dir():
                on_disk = extracted / info.filename
                assert on_disk.stat().st_size == info.file_size, info.filename


def test_two_processes_extracting_at_once(hello_pyz, tmp_path):
    for attempt in range(20):
        shiv_root = tmp_path / f"root-{attempt}"
        ports = free_port(), free_port()
        processes = [start(hello_pyz, shiv_root, port) for port in ports]
        try:
            healthy = [
                wait_healthy(port, proc) for port, proc in zip(ports, processes, strict=True)
            ]
        finally:
            for process in processes:
                stop(process)

        assert healthy == [True, True], f"attempt {attempt}"
        assert_extraction_intact(hello_pyz, shiv_root)


@pytest.mark.parametrize("delay", [0.02, 0.08, 0.15, 0.3])
def test_extraction_killed_half_way_does_not_block_the_next_start(hello_pyz, tmp_path, delay):
    shiv_root = tmp_path / "root"
    victim = start(hello_pyz, shiv_root, free_port())
    time.sleep(delay)
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    port = free_port()
    survivor = start(hello_pyz, shiv_root, port)
    try:
        assert wait_healthy(port, survivor)
    finally:
        stop(survivor)
    assert_extraction_intact(hello_pyz, shiv_root)
