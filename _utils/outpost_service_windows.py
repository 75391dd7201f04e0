"""
The Windows service backend: one WinSW v2 wrapper per app, driven through Salt's ``service``
(win_service), ``cmd`` and ``file`` (win_file) modules.

Layout under ``service_dir`` (default ``C:\\outpost\\services``)::

    <name>\\<name>.exe     a copy of the pinned WinSW v2.12.0 (WinSW-x64.exe)
    <name>\\<name>.xml     its configuration: WinSW v2 reads the XML named after its own exe
    <name>\\applied.json   digests of the XML the registration was last brought in line with

WinSW registers itself as the service binary and reads the XML on every start, so a changed
command, environment or log setting needs only a stop and a start. What the Service Control
Manager stores (display name, description, account, start mode, failure actions) is written at
install time only, so a change there registers the service again.
"""

import contextlib
import filecmp
import hashlib
import json
import logging
import ntpath
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

# Imported by name so tests can put a fake clock in their place.
from time import monotonic, sleep

from salt.exceptions import CommandExecutionError, SaltInvocationError

# outpost_service imports this module at its top, so this import may bind it half-initialised:
# look its attributes up at call time only, never at import time.
import outpost_service

log = logging.getLogger(__name__)

WINSW_VERSION = "2.12.0"
POLL_INTERVAL = 0.5
# WinSW kills the app once <stoptimeout> passes; it still has to end the tree and report.
STOP_MARGIN = 15
START_TIMEOUT = 30
UNREGISTER_TIMEOUT = 30
RESTART_DELAY = "10 sec"
LOG_SIZE_KB = 10 * 1024
LOG_KEEP_FILES = 5
DEFAULT_STOP_TIMEOUT = 30

# Well-known SIDs, because "Administrators" is translated on non-English Windows.
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
# Accounts Windows lets services log on as without granting the right first.
BUILTIN_DOMAINS = ("NT AUTHORITY", "NT SERVICE")

# What the SCM keeps from install time; WinSW reads everything else again on each start.
REGISTRATION_TAGS = ("id", "name", "description", "startmode", "serviceaccount", "onfailure")
# WinSW v2 runs every value through ExpandEnvironmentVariables, which has no escape.
EXPANDABLE = re.compile(r"%[^%]+%")
NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
PID_LINE = re.compile(r"^\s*PID\s*:\s*(\d+)\s*$", re.MULTILINE)

FAILURE_HINTS = {
    "stop": (
        "WinSW did not end the app within its stoptimeout. Find the wrapper's pid with "
        "'sc.exe queryex {name}' and end it with 'taskkill /PID <pid> /T /F'"
    ),
    "start": "see the WinSW and app logs in {log_dir}",
}


def _service_error(message):
    return outpost_service.ServiceError(message)


def service_sid(service_name):
    """The SID of ``NT SERVICE\\<name>``, which Windows derives from the name alone.

    Known before the service exists, so the XML can be shared with that account ahead of install.
    """
    digest = hashlib.sha1(service_name.upper().encode("utf-16-le"), usedforsecurity=False)
    return "S-1-5-80-" + "-".join(str(part) for part in struct.unpack("<5I", digest.digest()))


def render_xml(spec):
    """The WinSW v2 configuration of ``spec``, as UTF-8 bytes."""
    root = ET.Element("service")
    for tag, text in (
        ("id", spec.name),
        ("name", spec.display_name),
        ("description", f"{spec.display_name}: a Shiv app run by outpost"),
        ("executable", spec.command[0]),
        # One string quoted the way Python reads its argv back; WinSW's <argument> elements only
        # wrap spaces in quotes and would pass embedded quotes through broken.
        ("arguments", subprocess.list2cmdline(spec.command[1:])),
        ("workingdirectory", spec.workdir),
        ("startmode", "Automatic"),
        ("logpath", spec.log_dir),
        ("stoptimeout", f"{int(spec.stop_timeout)} sec"),
    ):
        ET.SubElement(root, tag).text = str(text)
    for key, value in sorted(spec.env.items()):
        ET.SubElement(root, "env", name=key, value=str(value))
    log_settings = ET.SubElement(root, "log", mode="roll-by-size")
    # WinSW counts the threshold in KB.
    size_kb = max(1, int(spec.log_max_bytes) // 1024) if spec.log_max_bytes else LOG_SIZE_KB
    keep = int(spec.log_backups) if spec.log_backups is not None else LOG_KEEP_FILES
    ET.SubElement(log_settings, "sizeThreshold").text = str(size_kb)
    ET.SubElement(log_settings, "keepFiles").text = str(keep)
    ET.SubElement(root, "onfailure", action="restart", delay=RESTART_DELAY)
    if spec.user:
        root.append(_service_account(spec.user))

    _refuse_unsafe_values(root)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _service_account(user):
    """No password: virtual, built-in and managed accounts only, so no secret lands in the XML."""
    domain, _, account = user.rpartition("\\")
    element = ET.Element("serviceaccount")
    ET.SubElement(element, "domain").text = domain or "."
    ET.SubElement(element, "user").text = account
    if (domain or ".").upper() not in BUILTIN_DOMAINS:
        ET.SubElement(element, "allowservicelogon").text = "true"
    return element


def _refuse_unsafe_values(root):
    """Refuse what WinSW would change behind our back or what XML 1.0 cannot carry.

    The message names the field, never the value: values may be secrets.
    """
    for element in root.iter():
        field, value = element.tag, element.text or ""
        if element.tag == "env":
            field, value = f"env {element.get('name')}", element.get("value")
        if EXPANDABLE.search(value):
            raise SaltInvocationError(
                f"{field}: contains %NAME%, which WinSW v2 would replace with an environment "
                "variable and cannot escape"
            )
        if NOT_XML_TEXT.search(value):
            raise SaltInvocationError(f"{field}: contains a control character XML cannot hold")


def _acl_principal(user):
    domain, _, account = user.rpartition("\\")
    if domain.upper() == "NT SERVICE":
        return service_sid(account)
    return account if domain in ("", ".") else user


def _same_path(left, right):
    return ntpath.normcase(ntpath.normpath(left)) == ntpath.normcase(ntpath.normpath(right))


def _binary_of(info):
    """The executable of a registration: ``"C:\\x\\y.exe" args`` gives ``C:\\x\\y.exe``."""
    command = str(info.get("BinaryPath") or "").strip()
    if command.startswith('"'):
        return command[1:].split('"', 1)[0]
    return command


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path):
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def _remove_if_exists(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class WindowsBackend:
    """Services wrapped by WinSW, one folder each under ``service_dir``."""

    kind = "windows"

    def __init__(self, salt_funcs, service_dir, winsw_path):
        self.salt = salt_funcs
        self.service_dir = service_dir
        self.winsw_path = winsw_path

    # -- paths ------------------------------------------------------------------------------------

    def app_dir(self, name):
        return os.path.join(self.service_dir, name)

    def wrapper_path(self, name):
        return os.path.join(self.app_dir(name), f"{name}.exe")

    def xml_path(self, name):
        return os.path.join(self.app_dir(name), f"{name}.xml")

    def marker_path(self, name):
        return os.path.join(self.app_dir(name), "applied.json")

    # -- the interface ----------------------------------------------------------------------------

    def define(self, spec):
        """Write the service's XML if it differs. Returns whether the service needs applying."""
        if not os.path.isfile(self.winsw_path):
            raise _service_error(
                f"WinSW {WINSW_VERSION} is not at {self.winsw_path}; apply outpost.winsw first"
            )
        wanted = render_xml(spec)
        os.makedirs(self.app_dir(spec.name), exist_ok=True)
        os.makedirs(spec.log_dir, exist_ok=True)

        written = self._write_xml(spec, wanted)
        return written or self._wrapper_outdated(spec.name)

    def apply(self, name):
        """Register the service, or bring its registration in line with the XML.

        Like supervisord's ``update``, a new or changed service is (re)started and an unchanged
        one is left as it is.
        """
        self._definition(name)  # fail here, before touching the registration, if never defined
        info = self._info(name)
        if info is None:
            self._install(name)
            return

        reason = self._reinstall_reason(name, info)
        if reason:
            log.info("registering service %s again: %s", name, reason)
            self.stop(name)
            self._unregister(name)
            self._install(name)
        elif self._restart_needed(name):
            log.info("restarting service %s to load its changed definition", name)
            self.stop(name)
            self._refresh_wrapper(name)
            self._record_applied(name)
            self.start(name)

    def start(self, name):
        """Start the service and wait until Windows reports it running."""
        # timeout=0: Salt sends the start and returns; the waiting is ours, on our clock.
        self._call("service.start", name, timeout=0)
        status = self._wait(name, ("Running", "Stopped"), START_TIMEOUT, "start")
        if status != "Running":
            raise _service_error(
                f"service {name} stopped right after it started; see the WinSW and app logs "
                f"in {self._log_dir(name)}"
            )

    def stop(self, name):
        """Stop the service and wait until Windows reports it stopped; a no-op when it is."""
        info = self._info(name)
        status = info["Status"] if info else "Stopped"
        if status == "Stopped":
            return

        if status == "Start Pending":
            self._wait(name, ("Running", "Stopped"), START_TIMEOUT, "start")
        if status != "Stop Pending":
            self._call("service.stop", name, timeout=0)
        self._wait(name, ("Stopped",), self._stop_timeout(name) + STOP_MARGIN, "stop")
        log.info("stopped service %s", name)

    def restart(self, name):
        """Stop, waiting as long as the app's stoptimeout allows, then start."""
        self.stop(name)
        self.start(name)

    def status(self, name):
        """``state`` is Windows' status in capitals (``STOP_PENDING``), or ``ABSENT``.

        ``pid`` is the WinSW wrapper's: the app runs as its child.
        """
        info = self._info(name)
        if info is None:
            return {"state": "ABSENT", "running": False, "pid": None}
        state = str(info["Status"]).upper().replace(" ", "_")
        pid = None if state == "STOPPED" else self._pid(name)
        return {"state": state, "running": state == "RUNNING", "pid": pid}

    def remove(self, name):
        """Stop and unregister the service and delete its wrapper folder; logs stay."""
        info = self._info(name)
        if info is None and not os.path.isdir(self.app_dir(name)):
            return False

        if info is not None:
            self.stop(name)
            self._unregister(name)
        try:
            shutil.rmtree(self.app_dir(name))
        except FileNotFoundError:
            pass
        except OSError as err:
            raise _service_error(f"could not delete {self.app_dir(name)}: {err}") from err
        log.info("removed service %s", name)
        return True

    # -- the definition on disk -------------------------------------------------------------------

    def _write_xml(self, spec, wanted):
        path = self.xml_path(spec.name)
        if _read_bytes(path) == wanted:
            return False

        # The XML holds the app's environment: lock the file down while it is still empty.
        staging = path + ".new"
        _remove_if_exists(staging)
        with open(staging, "xb"):
            pass
        self._restrict(staging, spec.user)
        with open(staging, "r+b") as stream:
            stream.write(wanted)
        os.replace(staging, path)
        log.debug("wrote %s", path)
        return True

    def validate(self, spec):
        """Raise before anything changes when WinSW could not take ``spec``."""
        render_xml(spec)

    def protect_folder(self, path, user=None):
        """An app's folder holds its settings: the same few accounts, inherited by its files."""
        self._restrict(path, user, applies_to="this_folder_subfolders_files")

    def _restrict(self, path, user, applies_to="this_folder_only"):
        """SYSTEM and Administrators only, plus read for the account WinSW runs as."""
        grants = {
            SYSTEM_SID: {"perms": "full_control", "applies_to": applies_to},
            ADMINISTRATORS_SID: {"perms": "full_control", "applies_to": applies_to},
        }
        if user:
            grants[_acl_principal(user)] = {"perms": "read", "applies_to": applies_to}
        self._call("file.set_perms", path, grant_perms=grants, inheritance=False, reset=True)

    def _definition(self, name):
        data = _read_bytes(self.xml_path(name))
        if data is None:
            raise _service_error(f"service {name} has no definition at {self.xml_path(name)}")
        # Our own file, written by define() and readable by administrators only.
        return ET.fromstring(data)  # noqa: S314

    def _setting(self, name, tag):
        """One value of the definition, or None without one (a registration we never defined)."""
        try:
            return self._definition(name).findtext(tag)
        except outpost_service.ServiceError:
            return None

    def _log_dir(self, name):
        return self._setting(name, "logpath") or self.app_dir(name)

    def _stop_timeout(self, name):
        words = (self._setting(name, "stoptimeout") or "").split()
        return int(words[0]) if words and words[0].isdigit() else DEFAULT_STOP_TIMEOUT

    def _digests(self, name):
        root = self._definition(name)
        registration = b"".join(
            ET.tostring(element) for tag in REGISTRATION_TAGS for element in root.findall(tag)
        )
        return {
            "xml": _sha256(_read_bytes(self.xml_path(name))),
            "registration": _sha256(registration),
        }

    def _applied(self, name):
        data = _read_bytes(self.marker_path(name))
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None

    def _record_applied(self, name):
        with open(self.marker_path(name), "w", encoding="utf-8") as stream:
            json.dump(self._digests(name), stream)

    def _wrapper_outdated(self, name):
        wrapper = self.wrapper_path(name)
        return not os.path.isfile(wrapper) or not filecmp.cmp(
            self.winsw_path, wrapper, shallow=False
        )

    def _refresh_wrapper(self, name):
        """Copy the pinned WinSW in; only ever while the service is stopped or absent."""
        if self._wrapper_outdated(name):
            shutil.copyfile(self.winsw_path, self.wrapper_path(name))
            log.info("copied WinSW %s to %s", WINSW_VERSION, self.wrapper_path(name))

    # -- the registration -------------------------------------------------------------------------

    def _install(self, name):
        self._refresh_wrapper(name)
        self._winsw(name, "install")
        self._record_applied(name)
        self.start(name)

    def _reinstall_reason(self, name, info):
        """Why an existing registration cannot be kept, or None when it can."""
        if not _same_path(_binary_of(info), self.wrapper_path(name)):
            return f"it runs {info.get('BinaryPath')!r}, not {self.wrapper_path(name)}"
        applied = self._applied(name)
        if applied is None:
            return "an earlier install did not finish"
        if applied.get("registration") != self._digests(name)["registration"]:
            return "its display name, account, start mode or failure actions changed"
        return None

    def _restart_needed(self, name):
        applied = self._applied(name) or {}
        return applied.get("xml") != self._digests(name)["xml"] or self._wrapper_outdated(name)

    def _unregister(self, name):
        # service.delete waits until the name is gone, so no install meets a registration that
        # is only marked for deletion.
        if not self._call("service.delete", name, timeout=UNREGISTER_TIMEOUT):
            raise _service_error(
                f"service {name} is still registered {UNREGISTER_TIMEOUT} s after deletion: "
                "Windows keeps it marked for deletion while a program holds it open; close "
                "services.msc and Event Viewer, then try again"
            )
        _remove_if_exists(self.marker_path(name))
        log.info("unregistered service %s", name)

    def _winsw(self, name, verb):
        command = [self.wrapper_path(name), verb]
        result = self._call(
            "cmd.run_all",
            command,
            cwd=self.app_dir(name),
            python_shell=False,
            ignore_retcode=True,
        )
        if result["retcode"] != 0:
            output = (result.get("stderr") or result.get("stdout") or "").strip()
            raise _service_error(
                f"WinSW could not {verb} service {name} (exit code {result['retcode']}): {output}"
            )
        log.info("WinSW %s: service %s", verb, name)

    # -- talking to Salt --------------------------------------------------------------------------

    def _call(self, function, *args, **kwargs):
        """Call a Salt function; its failure becomes a ServiceError saying what was attempted."""
        log.debug("calling %s for %s", function, args[0])
        try:
            return self.salt[function](*args, **kwargs)
        except CommandExecutionError as err:
            raise _service_error(f"{function} failed for {args[0]}: {err}") from err

    def _info(self, name):
        """Salt's ``service.info``, or None when no service of that name is registered."""
        try:
            return self.salt["service.info"](name)
        except CommandExecutionError as err:
            if not self._call("service.available", name):
                return None
            raise _service_error(f"could not read the state of service {name}: {err}") from err

    def _wait(self, name, wanted, timeout, action):
        """Poll until the status is one of ``wanted`` and return it; give up after ``timeout``."""
        deadline = monotonic() + timeout
        while True:
            info = self._info(name)
            status = info["Status"] if info else "Stopped"
            if status in wanted:
                return status
            if monotonic() >= deadline:
                break
            sleep(POLL_INTERVAL)

        hint = FAILURE_HINTS[action].format(name=name, log_dir=self._log_dir(name))
        raise _service_error(
            f"service {name} is still {status!r} {timeout:g} s after a {action} was asked; {hint}"
        )

    def _pid(self, name):
        """Salt's ``service.info`` leaves the process id out; ``sc.exe queryex`` has it.

        A status without a pid is still a status, so a failure here only costs the pid.
        """
        try:
            result = self.salt["cmd.run_all"](
                ["sc.exe", "queryex", name], python_shell=False, ignore_retcode=True
            )
        except CommandExecutionError as err:
            log.debug("no pid for service %s: %s", name, err)
            return None
        found = PID_LINE.search(result.get("stdout") or "")
        pid = int(found.group(1)) if found else 0
        return pid or None
