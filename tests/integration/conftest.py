"""Releases of the example app, built once per session and published on the master."""

import shutil

import pytest

from tests.conftest import app_python, free_port
from tests.support.apps import build_hello


@pytest.fixture(scope="session")
def hello_releases(ext_tree, tmp_path_factory):
    """hello 1.0.0 and 1.1.0 (healthy), 1.2.0 (fails its health check), 1.3.0 (a renamed data
    file), published under salt://releases/hello/."""
    published = ext_tree / "releases" / "hello"
    published.mkdir(parents=True, exist_ok=True)
    variants = {
        "1.0.0": {},
        "1.1.0": {},
        "1.2.0": {"healthy": False},
        "1.3.0": {"data_file": "welcome.txt"},
    }
    releases = {}
    for version, options in variants.items():
        manifest = build_hello(tmp_path_factory.mktemp(f"hello-{version}"), version, **options)
        shutil.copy(manifest["path"], published / f"hello-{version}.pyz")
        releases[version] = dict(manifest, source=f"salt://releases/hello/hello-{version}.pyz")
    return releases


@pytest.fixture
def app_settings():
    """Settings of a fresh app: its own port, the system Python."""
    return {"python": app_python(), "port": free_port(), "health_timeout": 20}
