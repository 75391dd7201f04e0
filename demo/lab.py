"""
A local outpost site for the demo and the benchmarks: one salt-master and a few salt-minions,
each minion with its own supervisord and outpost root, all started with Salt's own daemons.

Everything lives under ``.demo/`` in the repository (sockets under a short /tmp folder, since Unix
socket paths must stay under 108 characters) and is stopped again by ``close()``.
"""

import getpass
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from demo.supervisor import Supervisord  # noqa: E402

EXTENSION_FOLDERS = ("_modules", "_states", "_utils", "_beacons", "_runners", "_returners")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lab:
    """A master and ``minions`` clients on this machine."""

    def __init__(self, base=None, minions=("client-1",)):
        self.base = pathlib.Path(base or REPO / ".demo")
        self.sockets = pathlib.Path(tempfile.mkdtemp(prefix="opd-", dir="/tmp"))
        self.minion_ids = list(minions)
        self.ports = {"publish": free_port(), "ret": free_port()}
        self.processes = []
        self.supervisors = {}

    # -- layout -----------------------------------------------------------------------------

    @property
    def master_dir(self):
        return self.base / "etc" / "salt"

    @property
    def releases_dir(self):
        return self.base / "ext" / "releases"

    @property
    def pillar_dir(self):
        return self.base / "pillar"

    def outpost_root(self, minion_id):
        return self.base / "clients" / minion_id / "outpost"

    def _common(self, name):
        return {
            # Salt puts root_dir in front of every path below; they are absolute already.
            "root_dir": "/",
            "sock_dir": str(self.sockets / name),
            # Synced modules stay with this lab, not in the machine-wide cache of another checkout.
            "extension_modules": str(self.base / "var" / name / "extmods"),
            "pidfile": str(self.base / "var" / f"{name}.pid"),
            "log_file": str(self.base / "var" / f"{name}.log"),
            "user": getpass.getuser(),
            "log_level_logfile": "info",
        }

    def write_master_config(self):
        ext = self.base / "ext"
        ext.mkdir(parents=True, exist_ok=True)
        for folder in EXTENSION_FOLDERS:
            link = ext / folder
            if not link.exists():
                link.symlink_to(REPO / folder)
        self.releases_dir.mkdir(parents=True, exist_ok=True)
        self.pillar_dir.mkdir(parents=True, exist_ok=True)
        config = dict(
            self._common("master"),
            interface="127.0.0.1",
            publish_port=self.ports["publish"],
            ret_port=self.ports["ret"],
            pki_dir=str(self.base / "pki" / "master"),
            cachedir=str(self.base / "var" / "master" / "cache"),
            file_roots={"base": [str(REPO / "salt"), str(ext)]},
            pillar_roots={"base": [str(self.pillar_dir)]},
            auto_accept=True,
        )
        self._write(self.master_dir / "master", config)

    def write_minion_config(self, minion_id, supervisor):
        config = dict(
            self._common(minion_id),
            id=minion_id,
            master="127.0.0.1",
            master_port=self.ports["ret"],
            pki_dir=str(self.base / "pki" / minion_id),
            cachedir=str(self.base / "var" / minion_id / "cache"),
            outpost={
                "root": str(self.outpost_root(minion_id)),
                "supervisor": supervisor.minion_config(),
            },
        )
        self._write(self.base / "etc" / minion_id / "minion", config)

    @staticmethod
    def _write(path, config):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=True))

    # -- running ----------------------------------------------------------------------------

    def start(self):
        if self.base.exists():
            shutil.rmtree(self.base)
        self.write_master_config()
        self._spawn("salt-master", self.master_dir)
        for minion_id in self.minion_ids:
            supervisor = Supervisord(self.sockets / f"sv-{minion_id}").start()
            self.supervisors[minion_id] = supervisor
            self.write_minion_config(minion_id, supervisor)
            self._spawn("salt-minion", self.base / "etc" / minion_id)
        self.wait_for_minions()
        self.salt("*", "saltutil.sync_all")
        return self

    def _spawn(self, daemon, config_dir):
        (self.base / "var").mkdir(parents=True, exist_ok=True)
        log = open(self.base / "var" / f"{daemon}-{config_dir.name}.out", "ab")  # noqa: SIM115
        self.processes.append(
            subprocess.Popen(
                [str(BIN / daemon), "-c", str(config_dir), "-l", "quiet"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def wait_for_minions(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answered = self.salt("*", "test.ping", timeout=5, check=False) or {}
            if all(answered.get(minion) is True for minion in self.minion_ids):
                return
            time.sleep(0.5)
        raise RuntimeError(f"minions {self.minion_ids} did not answer within {timeout}s")

    def salt(self, target, function, *args, timeout=120, check=True):
        """Run ``salt`` against the lab's master; return the parsed JSON of every minion."""
        command = [
            str(BIN / "salt"),
            "-c",
            str(self.master_dir),
            "--out=json",
            "--static",
            f"--timeout={timeout}",
            target,
            function,
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and done.returncode not in (0, 1, 2, 11, 20):
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
        try:
            return json.loads(done.stdout) if done.stdout.strip() else {}
        except ValueError:
            if check:
                raise
            return {}

    def publish(self, manifest):
        """Put a built release on the master's fileserver under salt://releases/<app>/."""
        folder = self.releases_dir / manifest["name"]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / pathlib.Path(manifest["path"]).name
        shutil.copy(manifest["path"], target)
        return f"salt://releases/{manifest['name']}/{target.name}"

    def write_pillar(self, data, name="outpost"):
        (self.pillar_dir / f"{name}.sls").write_text(yaml.safe_dump(data))
        (self.pillar_dir / "top.sls").write_text(yaml.safe_dump({"base": {"*": [name]}}))
        self.salt("*", "saltutil.refresh_pillar", "wait=True")

    def close(self):
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for supervisor in self.supervisors.values():
            supervisor.stop()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
