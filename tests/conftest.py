"""
Shared fixtures: a real salt-master and salt-minion (pytest-salt-factories), a real supervisord,
and the repository's state tree and custom modules served by the master's fileserver.
"""

import base64
import hashlib
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

import outpost_jobcache  # noqa: E402
from demo.lab import (  # noqa: E402
    SERVED_FOLDERS,
    job_cache_settings,
    link_master_extensions,
    outpost_master_settings,
    role_settings,
)
from demo.supervisor import Supervisord  # noqa: E402
from tests.support.postgres import PostgresNotInstalled  # noqa: E402

pytest_plugins = ["tests.support.fixtures_postgres"]

log = logging.getLogger(__name__)

CLIENTS = ("client-1", "client-2", "client-3")
WEBHOOK_SECRET = "test-webhook-secret-3f9a"


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
    if not os.environ.get("OUTPOST_KEEP_TEST_FILES"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def salt_factories_config(short_root):
    return {"root_dir": short_root / "sf"}


@pytest.fixture(scope="session")
def ext_tree(short_root):
    """The custom modules, as the master serves them under salt://_modules and friends."""
    tree = short_root / "ext"
    tree.mkdir()
    for folder in SERVED_FOLDERS:
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
def signing_key():
    """The Ed25519 key CI signs release manifests with; the master trusts its public half."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def api_port():
    return free_port()


def outpost_apps():
    """The apps the test master rolls out, and to whom."""
    return {
        "hello": {"clients": list(CLIENTS), "canary": 1, "batch": 1, "soak": 0},
        "slowpoke": {"clients": list(CLIENTS[:2]), "canary": 1, "state_timeout": 6},
    }


def public_key_b64(private_key):
    from cryptography.hazmat.primitives import serialization

    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="session")
def app_ports():
    """Each client runs the rollout apps on ports of its own: they all share this machine."""
    return {client: {app: free_port() for app in ("hello", "slowpoke")} for client in CLIENTS}


# Jobs stay in the pgjsonb job cache this long in the tests: 7 days, in seconds.
TEST_KEEP_JOBS_SECONDS = 7 * 24 * 3600
ROLE_USERS = ("ops", "auditor", "ci")


@pytest.fixture(scope="session")
def role_passwords(short_root):
    """Each role's password; the master's eauth file holds their SHA-256 digests."""
    passwords = {user: f"{user}-{os.urandom(6).hex()}" for user in ROLE_USERS}
    lines = [f"{user}:{hashlib.sha256(pw.encode()).hexdigest()}" for user, pw in passwords.items()]
    (short_root / "eauth-users.txt").write_text("\n".join(lines) + "\n")
    return passwords


@pytest.fixture(scope="session")
def audit_dir(short_root):
    return short_root / "audit"


@pytest.fixture(scope="session")
def job_cache(request):
    """The pgjsonb job cache's settings on the session's PostgreSQL, or ``{}`` (Salt's local job
    cache) when the PostgreSQL tests are skipped."""
    try:
        server = request.getfixturevalue("postgres")
    except (pytest.skip.Exception, PostgresNotInstalled) as err:
        log.warning("no PostgreSQL (%s): the master keeps Salt's local job cache", err)
        return {}
    database = server.create_database("salt_jobs")
    outpost_jobcache.create_schema(
        host="127.0.0.1",
        port=server.port,
        dbname=database,
        user=server.user,
        password=server.password,
    )
    return job_cache_settings(
        "127.0.0.1",
        server.port,
        database,
        server.user,
        server.password,
        keep_jobs_seconds=TEST_KEEP_JOBS_SECONDS,
    )


@pytest.fixture(scope="session")
def salt_master(
    salt_factories,
    ext_tree,
    pillar_tree,
    short_root,
    signing_key,
    api_port,
    audit_dir,
    job_cache,
    role_passwords,
):
    overrides = {
        "file_roots": {"base": [str(REPO / "salt"), str(ext_tree)]},
        "pillar_roots": {"base": [str(pillar_tree)]},
        "fileserver_followsymlinks": True,
        # Relative: Salt puts the master's root_dir in front of it.
        "extension_modules": "extmods",
        **outpost_master_settings(
            api_port,
            WEBHOOK_SECRET,
            [public_key_b64(signing_key)],
            short_root / "registry.sqlite",
            outpost_apps(),
            health={
                "missing_after": 4,
                "check_every": 2,
                "max_actions": 50,
                "window": 600,
                "settle": 8,
            },
            audit_dir=audit_dir,
        ),
        **job_cache,
        **role_settings(short_root / "eauth-users.txt"),
        "log_level_logfile": "info",
    }
    factory = salt_factories.salt_master_daemon("outpost-master", overrides=overrides)
    link_master_extensions(factory.config["extension_modules"])
    with factory.started():
        yield factory


@pytest.fixture(scope="session")
def outpost_root(short_root):
    return short_root / "outpost"


def client_overrides(outpost_root, supervisor):
    return {
        "outpost": {"root": str(outpost_root), "supervisor": supervisor.minion_config()},
        "log_level_logfile": "info",
    }


def sync_client(factory):
    """What ops run once a client joins: sync outpost's modules. sync_all does not reload
    beacons, so a newly synced beacon module needs its own refresh."""
    caller = factory.salt_call_cli()
    synced = caller.run("saltutil.sync_all")
    assert synced.returncode == 0, synced
    caller.run("saltutil.refresh_beacons")


@pytest.fixture(scope="session")
def salt_minion(salt_master, supervisord, outpost_root):
    overrides = client_overrides(outpost_root, supervisord)
    factory = salt_master.salt_minion_daemon("client-1", overrides=overrides)
    with factory.started():
        sync_client(factory)
        yield factory


@pytest.fixture(scope="session")
def salt_call(salt_minion):
    return salt_minion.salt_call_cli(timeout=120)


@pytest.fixture(scope="session")
def salt_cli(salt_master):
    return salt_master.salt_cli(timeout=120)
