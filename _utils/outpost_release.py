"""
Release folders of one app on a client.

Layout under the outpost root (``C:\\outpost`` on Windows, ``/opt/outpost`` elsewhere)::

    apps/<app>/
        releases/<version>/app.pyz      the zipapp, never changed after install
        releases/<version>/release.json sha256, size, install time, shiv build facts
        releases/<version>/x/           SHIV_ROOT of this release: its own extraction
        current                         text file naming the live version, replaced atomically
        previous                        the version that was live before it
        settings.json                   python, port, args, env: for the service account only
        journal.jsonl                   every install, switch, failure, rollback and prune

Nothing here talks to Salt: the execution module is the adapter.
"""

import contextlib
import datetime
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile

from salt.exceptions import CommandExecutionError, SaltInvocationError

APP_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# Dot-separated identifiers after '-' and '+': no empty one, so no trailing '.' and no '..',
# which Windows would strip or read as a parent folder. Bounded: a version becomes a folder name.
# SemVer: numbers, and numeric pre-release identifiers, have no leading zero (01.0.0 would sort
# as 1.0.0 and name another folder).
_NUMBER = r"(?:0|[1-9][0-9]{0,8})"
_PRE_RELEASE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_IDENTIFIERS = rf"(?=[0-9A-Za-z.-]{{1,40}}(?:\+|\Z)){_PRE_RELEASE_ID}(?:\.{_PRE_RELEASE_ID})*"
VERSION = re.compile(
    rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}"
    rf"(?:-{_IDENTIFIERS})?(?:\+(?=[0-9A-Za-z.-]{{1,40}}\Z)[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
# Names Windows keeps for devices: a folder called so cannot be made or opened.
WINDOWS_DEVICE_NAMES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10)]
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A manifest nests a few levels (its scan results). Deeper JSON is refused before anything walks
# it: json and the code after it recurse, and run out of stack near 1000 levels.
MANIFEST_MAX_DEPTH = 32
# Health events and remediation books use these for the beacon's heartbeat and the tunnel
# connector: an app so named would be taken for them.
RESERVED_NAMES = frozenset(["heartbeat", "cloudflared"])
PYZ_NAME = "app.pyz"
# Journal actions after which a release is the live one.
LIVE_ACTIONS = ("activate", "rollback")
JOURNAL_TAIL_BYTES = 64 * 1024
SHIV_ROOT_NAME = "x"
# Windows' MAX_PATH counts the drive, the separators and a terminating NUL.
WINDOWS_MAX_PATH = 259


class ReleaseError(CommandExecutionError):
    """A release could not be installed, switched or removed."""


class HealthError(ReleaseError):
    """A release started but did not pass its health check."""


def app_name_problem(name):
    """Why ``name`` cannot be an app name, or None; the CLI asks the same question."""
    if not isinstance(name, str) or not APP_NAME.fullmatch(name):
        return "is not an app name (lowercase letter, then up to 39 of a-z 0-9 _ -)"
    if name in WINDOWS_DEVICE_NAMES:
        return "is a Windows device name, which cannot name a folder"
    if name in RESERVED_NAMES:
        return "is reserved: outpost's health events use it for the heartbeat and the connector"
    return None


def nesting_depth(value):
    """How deep lists and objects nest in ``value``, measured without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in item)
    return deepest


def validate_app_name(name):
    problem = app_name_problem(name)
    if problem:
        raise SaltInvocationError(f"name: {name!r} {problem}")
    return name


def version_problem(version):
    """Why ``version`` cannot be a release's version, or None; the CLI asks the same question."""
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        return "is not a semantic version such as 1.2.3 or 1.2.3-rc.1"
    return None


def validate_version(version, field="version"):
    problem = version_problem(version)
    if problem:
        raise SaltInvocationError(f"{field}: {version!r} {problem}")
    return version


def normalize_sha256(source_hash):
    """Accept ``<hex>`` or ``sha256=<hex>``, as Salt's file states do."""
    value = str(source_hash or "").strip().lower()
    if value.startswith("sha256="):
        value = value[len("sha256=") :]
    if not SHA256.fullmatch(value):
        raise SaltInvocationError(
            "source_hash: expected 64 hex digits of sha256 (optionally prefixed 'sha256=')"
        )
    return value


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def write_atomically(path, text, mode=0o644):
    """Write through a temporary file in the same folder, then rename over the target."""
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_shiv_facts(pyz_path):
    """The facts shiv recorded at build time, read from the zipapp without running it."""
    try:
        with zipfile.ZipFile(pyz_path) as archive:
            environment = json.loads(archive.read("environment.json"))
            members = [
                info.filename for info in archive.infolist() if info.filename.startswith("site-")
            ]
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise ReleaseError(f"{pyz_path} is not a shiv zipapp: {err}") from err
    longest = max(members, key=len, default="")
    return {
        "build_id": environment.get("build_id"),
        "entry_point": environment.get("entry_point"),
        "script": environment.get("script"),
        "longest_member": longest,
    }


def deepest_extracted_path(shiv_root, facts):
    """The longest path shiv will create when it extracts this zipapp under ``shiv_root``."""
    extraction = f"{PYZ_NAME}_{facts['build_id']}"
    return os.path.join(shiv_root, extraction, *facts["longest_member"].split("/"))


class AppReleases:
    """The release folders, pointers and journal of one app."""

    def __init__(self, root, app):
        self.app = validate_app_name(app)
        self.root = root
        self.app_dir = os.path.join(root, "apps", app)
        self.releases_dir = os.path.join(self.app_dir, "releases")
        self.staging_dir = os.path.join(self.app_dir, ".staging")
        self.journal_path = os.path.join(self.app_dir, "journal.jsonl")
        self.settings_path = os.path.join(self.app_dir, "settings.json")

    # -- paths --------------------------------------------------------------------------------

    def release_dir(self, version):
        return os.path.join(self.releases_dir, validate_version(version))

    def pyz_path(self, version):
        return os.path.join(self.release_dir(version), PYZ_NAME)

    def shiv_root(self, version):
        return os.path.join(self.release_dir(version), SHIV_ROOT_NAME)

    # -- reading ------------------------------------------------------------------------------

    def exists(self):
        return os.path.isdir(self.app_dir)

    def release_info(self, version):
        path = os.path.join(self.release_dir(version), "release.json")
        try:
            with open(path, encoding="utf-8") as stream:
                return json.load(stream)
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise ReleaseError(f"{path} is unreadable: {err}") from err

    def is_installed(self, version, sha256=None):
        info = self.release_info(version)
        if info is None or not os.path.isfile(self.pyz_path(version)):
            return False
        return sha256 is None or info.get("sha256") == sha256

    def releases(self):
        """Installed releases, oldest install first."""
        if not os.path.isdir(self.releases_dir):
            return []
        found = []
        for version in os.listdir(self.releases_dir):
            if not VERSION.fullmatch(version):
                continue
            info = self.release_info(version)
            if info is not None:
                found.append(info)
        return sorted(found, key=lambda info: info.get("installed_at", ""))

    def pointer(self, which):
        try:
            with open(os.path.join(self.app_dir, which), encoding="utf-8") as stream:
                value = stream.read().strip()
        except FileNotFoundError:
            return None
        return value or None

    def current(self):
        return self.pointer("current")

    def previous(self):
        return self.pointer("previous")

    def settings(self):
        try:
            with open(self.settings_path, encoding="utf-8") as stream:
                return json.load(stream)
        except FileNotFoundError:
            return None

    def journal(self, limit=None):
        entries, _ = self._journal_tail(None)
        return entries[-limit:] if limit else entries

    def live_since(self):
        """When the current release last went live (an activation or a rollback to it)."""
        current = self.current()
        # The beacon asks every few seconds: the newest entries nearly always answer.
        for size in (JOURNAL_TAIL_BYTES, None):
            entries, whole = self._journal_tail(size)
            for entry in reversed(entries):
                if entry.get("version") == current and entry.get("action") in LIVE_ACTIONS:
                    return entry.get("time")
            if whole:
                break
        return None

    def _journal_tail(self, size):
        """The entries in the last ``size`` bytes (None: all), and whether that was all. A line
        torn by a crash mid-write, or edited by hand, is skipped, not fatal."""
        try:
            with open(self.journal_path, "rb") as stream:
                length = stream.seek(0, os.SEEK_END)
                whole = size is None or length <= size
                stream.seek(0 if whole else length - size)
                lines = stream.read().splitlines()
        except FileNotFoundError:
            return [], True
        entries = []
        for line in lines if whole else lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries, whole

    # -- changing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self):
        """One change at a time per app: an activation and a rollback must not interleave.

        The operating system drops the lock when its holder dies, so a killed job blocks nothing.
        """
        os.makedirs(self.app_dir, exist_ok=True)
        with open(os.path.join(self.app_dir, ".lock"), "a+b") as handle:
            _lock_file(handle)
            try:
                yield
            finally:
                _unlock_file(handle)

    def changing(self):
        """Whether a switch, restart or rollback holds the app's lock right now."""
        path = os.path.join(self.app_dir, ".lock")
        if not os.path.exists(path):
            return False
        with open(path, "a+b") as handle:
            if not _try_lock_file(handle):
                return True
            _unlock_file(handle)
            return False

    def ensure_folders(self):
        os.makedirs(self.releases_dir, exist_ok=True)
        os.makedirs(self.staging_dir, exist_ok=True)

    def record(self, action, version=None, **fields):
        """Append one line to the journal; a line is written whole or not at all."""
        os.makedirs(self.app_dir, exist_ok=True)
        entry = {"time": now_iso(), "app": self.app, "action": action, "version": version}
        entry.update(fields)
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        with open(self.journal_path, "a+b") as stream:
            # After a line torn by a crash, start a new one rather than extend the torn one.
            if stream.seek(0, os.SEEK_END):
                stream.seek(-1, os.SEEK_END)
                if stream.read(1) != b"\n":
                    line = b"\n" + line
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())
        return entry

    def stage_path(self, version):
        self.ensure_folders()
        return os.path.join(self.staging_dir, f"{validate_version(version)}.pyz")

    def install(self, version, staged_pyz, sha256, max_path=None):
        """Move a zipapp whose sha256 was verified into its release folder, all or nothing."""
        try:
            facts = read_shiv_facts(staged_pyz)
            self._check_path_length(version, facts, max_path)
        except ReleaseError:
            os.remove(staged_pyz)
            raise

        building = os.path.join(self.staging_dir, f"{version}.building")
        shutil.rmtree(building, ignore_errors=True)
        os.makedirs(os.path.join(building, SHIV_ROOT_NAME))
        os.replace(staged_pyz, os.path.join(building, PYZ_NAME))
        info = {
            "app": self.app,
            "version": version,
            "sha256": sha256,
            "size": os.path.getsize(os.path.join(building, PYZ_NAME)),
            "installed_at": now_iso(),
            "build_id": facts["build_id"],
            "entry_point": facts["entry_point"] or facts["script"],
        }
        write_atomically(os.path.join(building, "release.json"), json.dumps(info, indent=2))
        target = self.release_dir(version)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(building, target)
        self.record("install", version, sha256=sha256, size=info["size"])
        return info

    def _check_path_length(self, version, facts, max_path):
        if not max_path:
            return
        deepest = deepest_extracted_path(self.shiv_root(version), facts)
        if len(deepest) > max_path:
            raise ReleaseError(
                f"root: extracting {self.app} {version} would create a path of {len(deepest)} "
                f"characters, over the limit of {max_path} ({deepest}); choose a shorter outpost "
                "root"
            )

    def switch(self, version):
        """Make ``version`` current; the old current becomes previous. Returns the old current."""
        old = self.current()
        if old and old != version:
            write_atomically(os.path.join(self.app_dir, "previous"), old + "\n")
        write_atomically(os.path.join(self.app_dir, "current"), version + "\n")
        return old

    def restore_pointers(self, current, previous):
        """Put both pointers back as they were before a failed activation."""
        for which, value in (("current", current), ("previous", previous)):
            path = os.path.join(self.app_dir, which)
            if value:
                write_atomically(path, value + "\n")
            elif os.path.exists(path):
                os.remove(path)

    def save_settings(self, settings):
        """Settings hold the app's environment, so only the owner may read them."""
        self.ensure_folders()
        write_atomically(
            self.settings_path,
            json.dumps(settings, indent=2, sort_keys=True),
            mode=stat.S_IRUSR | stat.S_IWUSR,
        )

    def remove_release(self, version):
        shutil.rmtree(self.release_dir(version))

    def prunable(self, keep, installed=None, protected=None):
        """Releases beyond the newest ``keep``, never the current or previous one.

        ``installed`` (oldest first) and ``protected`` let a caller ask about a future state.
        """
        if protected is None:
            protected = {self.current(), self.previous()}
        if installed is None:
            installed = [info["version"] for info in self.releases()]
        kept = set(installed[-keep:]) if keep > 0 else set()
        return [v for v in installed if v not in kept and v not in protected]


# What msvcrt.locking raises while another process holds the byte.
LOCK_BUSY_ERRNOS = frozenset(
    number for number in (errno.EDEADLK, getattr(errno, "EDEADLOCK", None), errno.EACCES) if number
)


def _lock_file(handle):
    if os.name == "nt":
        import msvcrt  # pylint: disable=import-outside-toplevel

        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError as err:
                # LK_LOCK gives up after ten seconds (EDEADLOCK): keep waiting. Anything else
                # (a closed handle, say) would never succeed.
                if err.errno not in LOCK_BUSY_ERRNOS:
                    raise
    import fcntl  # pylint: disable=import-outside-toplevel

    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def _try_lock_file(handle):
    """Take the lock if it is free; False when another holds it."""
    if os.name == "nt":
        import msvcrt  # pylint: disable=import-outside-toplevel

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl  # pylint: disable=import-outside-toplevel

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock_file(handle):
    if os.name == "nt":
        import msvcrt  # pylint: disable=import-outside-toplevel

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl  # pylint: disable=import-outside-toplevel

    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
