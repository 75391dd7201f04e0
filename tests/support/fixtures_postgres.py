"""
pytest plugin: one real PostgreSQL server for the whole test session.

tests/conftest.py loads it through ``pytest_plugins``. Without PostgreSQL installed the fixture
errors, telling to run ``make test``, which installs it; with ``OUTPOST_SKIP_POSTGRES=1`` the
tests that need it are skipped instead.
"""

import os
import pathlib
import shutil
import tempfile

import pytest

from tests.support.postgres import SKIP_ENV, Postgres


@pytest.fixture(scope="session")
def postgres():
    """A running ``Postgres``; ``postgres.dsn`` reaches its database, ``fresh_database()`` more."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: the PostgreSQL tests are skipped")
    # Under /tmp, not tmp_path: the postgres OS user must reach the folder, and the socket path
    # must stay short.
    root = pathlib.Path(tempfile.mkdtemp(prefix="op-pg-", dir="/tmp"))
    server = Postgres(root)
    try:
        with server:
            yield server
    finally:
        if not os.environ.get("OUTPOST_KEEP_TEST_FILES"):
            shutil.rmtree(root, ignore_errors=True)
