"""The WinRM stand-in's site: its address, CA, credentials, and the installer the master serves."""

import dataclasses
import hashlib
import os
import pathlib

from tests.standins import winrm as standin

INSTALLER = "Salt-Minion-3008.4-Py3-AMD64-Setup.exe"
HOST = "client-w"
USERNAME = "outpost-admin"
# Distinctive, so a test can search logs, events and returns for it.
PASSWORD = "winrm-pw-6c1f9e2ab4d7"
# Where the master finds the credentials in Vault.
VAULT_SECRET = {"mount": "secret", "path": "outpost/winrm/{minion_id}"}


def bootstrap_script(size=10_240):
    """A PowerShell script of about ``size`` bytes that prints one line."""
    lines = ["# outpost test bootstrap script: comments make up its bulk"]
    number = 0
    while sum(len(line) + 1 for line in lines) < size - 40:
        number += 1
        lines.append(f"# padding line {number:05d} " + "-" * 60)
    lines.append("Write-Output 'bootstrap script ran'")
    return ("\n".join(lines) + "\n").encode()


@dataclasses.dataclass
class WinRMSite:
    folder: pathlib.Path
    port: int
    master_port: int
    installer: bytes
    script: bytes

    @classmethod
    def create(cls, folder, ext_tree, port, master_port, vault_server):
        vault_server.mount_kv(VAULT_SECRET["mount"])
        vault_server.put(
            VAULT_SECRET["mount"],
            VAULT_SECRET["path"].format(minion_id=HOST),
            {"username": USERNAME, "password": PASSWORD},
        )
        folder = pathlib.Path(folder)
        standin.make_certificates(folder / "tls")
        artifacts = ext_tree / "artifacts" / "salt"
        artifacts.mkdir(parents=True, exist_ok=True)
        installer = os.urandom(48 * 1024)
        (artifacts / INSTALLER).write_bytes(installer)
        script = bootstrap_script()
        (artifacts / "prepare.ps1").write_bytes(script)
        return cls(folder, port, master_port, installer, script)

    @property
    def ca(self):
        return str(self.folder / "tls" / "ca.pem")

    @property
    def endpoint(self):
        return f"https://127.0.0.1:{self.port}/wsman"

    def master_settings(self):
        return {
            "master": f"127.0.0.1:{self.master_port}",
            "installer": {
                "source": f"salt://artifacts/salt/{INSTALLER}",
                "sha256": hashlib.sha256(self.installer).hexdigest(),
            },
            "answer_timeout": 120,
            "recover_interval": 600,
            "transport": "basic",
            "ca_trust_path": self.ca,
            "hosts": {
                HOST: {
                    "endpoint": self.endpoint,
                    "username": {"vault": dict(VAULT_SECRET, key="username")},
                    "password": {"vault": dict(VAULT_SECRET, key="password")},
                    "bootstrap_script": "salt://artifacts/salt/prepare.ps1",
                }
            },
        }

    def serve(self, sock_dir):
        return standin.serve(self.folder, sock_dir, USERNAME, PASSWORD, port=self.port)
