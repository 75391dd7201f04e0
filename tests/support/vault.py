"""
pytest plugin: the Vault stand-in (``tests/standins/vault.py``) for the whole test session.

``vault_server`` is running, with KV version 2 at ``secret`` (as a dev-mode Vault has), AppRole
enabled at the custom mount ``outpost-approle`` and a role ``outpost-master`` whose policy reads
and writes every KV mount. ``vault_server.opts()`` is the ``outpost:vault`` setting that reaches
it. A test that takes Vault down (``with vault_server.outage():``) gets it back on the same port.
"""

import contextlib

import pytest

from tests.standins.vault import VaultStandin

AUTH_MOUNT = "outpost-approle"
ROLE = "outpost-master"
POLICY = "outpost-master"


class VaultServer:
    """What tests use of the stand-in: ``url``, the role's ``role_id`` and ``secret_id``,
    ``mount_kv``, ``put`` and ``get``; ``standin`` for everything else."""

    def __init__(self, standin, auth_mount=AUTH_MOUNT, role=ROLE):
        self.standin = standin
        self.auth_mount = auth_mount
        self.role = role
        standin.add_policy(POLICY, {"*": ["create", "read", "update", "delete", "list"]})
        self.role_id, self.secret_id = standin.add_approle(role, [POLICY], mount=auth_mount)

    @property
    def url(self):
        return self.standin.url

    @property
    def root_token(self):
        return self.standin.root_token

    def mount_kv(self, path, version=2):
        """Enable a KV engine at ``path``; an existing mount of that version is kept."""
        engine = self.standin.state.mounts.get(path.strip("/"))
        if engine is None:
            self.standin.mount_kv(path, version)
        elif engine["version"] != int(version):
            raise ValueError(f"{path} is already mounted as KV version {engine['version']}")

    def put(self, mount, path, data):
        self.standin.put(mount, path, data)

    def get(self, mount, path):
        return self.standin.get(mount, path)

    def opts(self, **overrides):
        """The master's ``outpost:vault`` setting for this server."""
        settings = {
            "url": self.url,
            "auth": {
                "method": "approle",
                "mount": self.auth_mount,
                "role_id": self.role_id,
                "secret_id": self.secret_id,
            },
            "cache_ttl": 0,
            "timeout": 5,
        }
        settings.update(overrides)
        return settings

    @contextlib.contextmanager
    def outage(self):
        """Vault is down (connections refused) inside the block, and back after it."""
        self.standin.stop()
        try:
            yield self
        finally:
            self.standin.start()


@pytest.fixture(scope="session")
def vault_server():
    standin = VaultStandin().start()
    try:
        yield VaultServer(standin)
    finally:
        standin.stop()
