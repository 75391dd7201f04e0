"""
A local outpost site for the demo and the benchmarks: one salt-master and a few salt-minions,
each minion with its own supervisord and outpost root, all started with Salt's own daemons.

Everything lives under ``.demo/`` in the repository (sockets under a short /tmp folder, since Unix
socket paths must stay under 108 characters) and is stopped again by ``close()``.
"""

import getpass
import json
import os
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

# Folders the master serves next to the state tree (salt://_modules, salt://reactor, ...).
SERVED_FOLDERS = (
    "_modules",
    "_states",
    "_utils",
    "_beacons",
    "_runners",
    "_returners",
    "_pillar",
    "reactor",
)
# What `salt-run saltutil.sync_all` would put in the master's extension_modules.
MASTER_EXTENSIONS = {
    "runners": "_runners",
    "pillar": "_pillar",
    "utils": "_utils",
    # Orchestrations run the master-side cloudflare_zt states with the master's own loader.
    "modules": "_modules",
    "states": "_states",
    "returners": "_returners",
    "log_handlers": "_log_handlers",
}
# The events the audit trail keeps (see _returners/outpost_audit.py).
AUDIT_EVENTS = [
    "salt/job/*/new",
    "salt/job/*/ret/*",
    "salt/run/*/new",
    "salt/run/*/ret",
    "salt/auth",
    "salt/key",
    "outpost/*",
]
# What each role may do (Salt's external_auth and publisher_acl): ops run states and outpost's
# app functions on clients; auditors read jobs and the trail; CI has no Salt account at all, only
# the webhook's HMAC secret.
OPS_FUNCTIONS = ["state.apply", "state.sls", "state.highstate", "shiv_app.*", "cloudflared.*"]
ROLES = {
    "ops": [{"client-*": OPS_FUNCTIONS}],
    "auditor": ["@jobs", {"@runner": ["outpost_audit.verify", "outpost_audit.report"]}],
}


def link_master_extensions(folder):
    """Put the runners, pillar and utils where the master loads them from."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, source in MASTER_EXTENSIONS.items():
        link = folder / kind
        if not link.exists():
            link.symlink_to(REPO / source)


def audit_settings(audit_dir):
    """The audit trail, security stream and JSON log under ``audit_dir``, fed by EventReturn."""
    audit_dir = pathlib.Path(audit_dir)
    return {
        "event_return": ["outpost_audit"],
        "event_return_whitelist": list(AUDIT_EVENTS),
        "audit": {
            "trail": str(audit_dir / "trail.jsonl"),
            "security_log": str(audit_dir / "security.jsonl"),
        },
        "logs": {"file": str(audit_dir / "outpost.jsonl")},
    }


def role_settings(users_file):
    """Roles through Salt's ``file`` eauth (``user:sha256-of-password`` lines in ``users_file``)
    and the same rights for local accounts through ``publisher_acl``."""
    return {
        "external_auth": {
            "file": {"^filename": str(users_file), "^hashtype": "sha256", **ROLES},
        },
        "publisher_acl": {"ops": ROLES["ops"]},
        # salt-api runs jobs and runners for tokens; wheel (keys, config) stays shut.
        "netapi_enable_clients": ["local", "runner"],
    }


def job_cache_settings(host, port, db, user, password, keep_jobs_seconds=90 * 24 * 3600):
    """Salt's pgjsonb master job cache; jobs are kept ``keep_jobs_seconds`` seconds, then
    archived. The tables come from ``outpost_jobcache.create_schema``."""
    return {
        "master_job_cache": "pgjsonb",
        "keep_jobs_seconds": int(keep_jobs_seconds),
        "archive_jobs": True,
        "returner.pgjsonb.host": host,
        "returner.pgjsonb.port": int(port),
        "returner.pgjsonb.db": db,
        "returner.pgjsonb.user": user,
        "returner.pgjsonb.pass": password,
        "returner.pgjsonb.connect_timeout": 5,
    }


def outpost_master_settings(
    api_port,
    secret,
    signing_keys,
    registry_path,
    apps,
    health=None,
    audit_dir=None,
    masters=None,
    registry=None,
):
    """What outpost adds to a master's configuration: the reactors, the registry's pillar,
    salt-api's webhook, the heartbeat check and the rollout leases on Salt's scheduler, the audit
    trail, and outpost's own settings. ``masters`` (``lease``, ``takeover``, ``renew_every``)
    tunes the rollout leases of several masters; ``registry`` replaces the SQLite registry at
    ``registry_path`` (``{"driver": "postgres", "dsn": ...}``)."""
    health = health or {}
    masters = dict(masters or {})
    renew_every = masters.pop("renew_every", 30)
    audit = audit_settings(audit_dir or pathlib.Path(registry_path).parent / "audit")
    return {
        "event_return": audit.pop("event_return"),
        "event_return_whitelist": audit.pop("event_return_whitelist"),
        # outpost_vault after the registry: it replaces secret references in the pillar.
        "ext_pillar": [{"outpost_registry": {}}, {"outpost_vault": {}}],
        "reactor": [
            {"salt/netapi/hook/outpost/release": ["salt://reactor/release.sls"]},
            {"salt/minion/*/start": ["salt://reactor/minion_start.sls"]},
            {"salt/beacon/*/app_health/*": ["salt://reactor/health.sls"]},
            {"salt/beacon/*/tunnel_health/*": ["salt://reactor/health.sls"]},
            {"outpost/client/*/missing": ["salt://reactor/client_missing.sls"]},
            {"outpost/rollout/*/resume": ["salt://reactor/rollout_resume.sls"]},
        ],
        "schedule": {
            "outpost-heartbeats": {
                "function": "outpost_health.check_heartbeats",
                "seconds": health.get("check_every", 60),
            },
            "outpost-rollouts": {"function": "outpost_release.resume", "seconds": renew_every},
        },
        # The HMAC on every announcement is the webhook's authentication; salt-api listens on
        # loopback here, behind TLS termination in production.
        "rest_cherrypy": {
            "host": "127.0.0.1",
            "port": api_port,
            "disable_ssl": True,
            "webhook_disable_auth": True,
        },
        "outpost": {
            "webhook": {"secret": secret},
            "releases": {"signing_keys": list(signing_keys), "allowlist": ["salt://releases/"]},
            "registry": registry or {"driver": "sqlite", "path": str(registry_path)},
            "masters": masters,
            "apps": apps,
            "health": {key: value for key, value in health.items() if key != "check_every"},
            **audit,
        },
    }


def daemon_environment():
    """The environment a service manager gives a Salt daemon: a shell's PYTHONDONTWRITEBYTECODE
    would make every job compile the synced modules from source again."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lab:
    """A master and ``minions`` clients on this machine."""

    def __init__(
        self,
        base=None,
        minions=("client-1",),
        apps=None,
        signing_keys=(),
        secret=None,
        health=None,
        minion_options=None,
    ):
        self.base = pathlib.Path(base or REPO / ".demo")
        self.sockets = pathlib.Path(tempfile.mkdtemp(prefix="opd-", dir="/tmp"))
        self.minion_ids = list(minions)
        self.ports = {"publish": free_port(), "ret": free_port(), "api": free_port()}
        self.apps = apps or {}
        self.signing_keys = list(signing_keys)
        self.secret = secret
        self.health = health
        self.minion_options = minion_options or {}
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

    @property
    def registry_path(self):
        return self.base / "var" / "master" / "registry.sqlite"

    @property
    def audit_dir(self):
        return self.base / "var" / "audit"

    @property
    def hook_url(self):
        return f"http://127.0.0.1:{self.ports['api']}/hook/outpost/release"

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
        for folder in SERVED_FOLDERS:
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
            **outpost_master_settings(
                self.ports["api"],
                self.secret,
                self.signing_keys,
                self.registry_path,
                self.apps,
                self.health,
                audit_dir=self.audit_dir,
            ),
        )
        link_master_extensions(config["extension_modules"])
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
            **self.minion_options,
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
        if self.apps:
            self._spawn("salt-api", self.master_dir)
        for minion_id in self.minion_ids:
            supervisor = Supervisord(self.sockets / f"sv-{minion_id}").start()
            self.supervisors[minion_id] = supervisor
            self.write_minion_config(minion_id, supervisor)
            self._spawn("salt-minion", self.base / "etc" / minion_id)
        self.wait_for_minions()
        self.salt("*", "saltutil.sync_all")
        # sync_all does not reload beacons; a newly synced beacon module needs this.
        self.salt("*", "saltutil.refresh_beacons")
        return self

    def _spawn(self, daemon, config_dir):
        (self.base / "var").mkdir(parents=True, exist_ok=True)
        log = open(self.base / "var" / f"{daemon}-{config_dir.name}.out", "ab")  # noqa: SIM115
        self.processes.append(
            subprocess.Popen(
                [str(BIN / daemon), "-c", str(config_dir), "-l", "quiet"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=daemon_environment(),
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

    def runner(self, function, *args, timeout=120):
        """Run ``salt-run`` against the lab's master; return its parsed JSON."""
        done = self._run_runner(function, args, timeout, "--out=json")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def runner_text(self, function, *args, timeout=120):
        return self._run_runner(function, args, timeout, "--out=txt").stdout

    def _run_runner(self, function, args, timeout, out):
        command = [str(BIN / "salt-run"), "-c", str(self.master_dir), out, f"--timeout={timeout}"]
        return subprocess.run(
            [*command, function, *args], capture_output=True, text=True, check=False
        )

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

    def write_secrets(self, tree):
        """The secrets file outpost_vault reads without a Vault (``{mount: {path: data}}``),
        beside the master's configuration: the embedded default, not for production."""
        path = self.master_dir / "outpost-secrets.yaml"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(tree))

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
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
