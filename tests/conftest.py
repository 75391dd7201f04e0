"""
Shared fixtures: a real salt-master and salt-minion (pytest-salt-factories), a real supervisord,
and the repository's state tree and custom modules served by the master's fileserver.
"""

import logging
import os
import pathlib
import shutil
import socket
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "_utils"))

from demo.supervisor import Supervisord  # noqa: E402

log = logging.getLogger(__name__)

EXTENSION_FOLDERS = ("_modules", "_states", "_utils", "_beacons", "_runners", "_returners")


def app_python():
    """The pinned interpreter apps run on in tests: the system's, never the one Salt runs on."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and os.path.realpath(candidate) != os.path.realpath(
            sys.executable
        ):
            return candidate
    pytest.skip("no Python apart from Salt's own to run apps on")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def short_root():
    """Unix socket paths must stay under 108 characters, so daemons live under a short /tmp path."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="op-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def salt_factories_config(short_root):
    return {"root_dir": short_root / "sf"}


@pytest.fixture(scope="session")
def ext_tree(short_root):
    """The custom modules, as the master serves them under salt://_modules and friends."""
    tree = short_root / "ext"
    tree.mkdir()
    for folder in EXTENSION_FOLDERS:
        (tree / folder).symlink_to(REPO / folder)
    (tree / "releases").mkdir()
    return tree


@pytest.fixture(scope="session")
def pillar_tree(short_root):
    tree = short_root / "pillar"
    tree.mkdir()
    (tree / "top.sls").write_text("base: {}\n")
    return tree


@pytest.fixture(scope="session")
def supervisord(short_root):
    daemon = Supervisord(short_root / "sv").start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def salt_master(salt_factories, ext_tree, pillar_tree):
    overrides = {
        "file_roots": {"base": [str(REPO / "salt"), str(ext_tree)]},
        "pillar_roots": {"base": [str(pillar_tree)]},
        "fileserver_followsymlinks": True,
        "log_level_logfile": "info",
    }
    factory = salt_factories.salt_master_daemon("outpost-master", overrides=overrides)
    with factory.started():
        yield factory


@pytest.fixture(scope="session")
def outpost_root(short_root):
    return short_root / "outpost"


@pytest.fixture(scope="session")
def salt_minion(salt_master, supervisord, outpost_root):
    overrides = {
        "outpost": {"root": str(outpost_root), "supervisor": supervisord.minion_config()},
        "log_level_logfile": "info",
    }
    factory = salt_master.salt_minion_daemon("client-1", overrides=overrides)
    with factory.started():
        synced = factory.salt_call_cli().run("saltutil.sync_all")
        assert synced.returncode == 0, synced
        yield factory


@pytest.fixture(scope="session")
def salt_call(salt_minion):
    return salt_minion.salt_call_cli(timeout=120)


@pytest.fixture(scope="session")
def salt_cli(salt_master):
    return salt_master.salt_cli(timeout=120)
