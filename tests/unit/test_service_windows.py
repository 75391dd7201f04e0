"""
Unit tests of the WinSW service backend, with Salt's win_service, cmdmod and win_file functions
mocked against their real signatures and a fake clock, so nothing here needs Windows.
"""

import os
import pathlib
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from unittest.mock import create_autospec

import pytest
import salt.modules.cmdmod
import salt.modules.win_file
import salt.modules.win_service
from salt.exceptions import CommandExecutionError, SaltInvocationError

UTILS = pathlib.Path(__file__).resolve().parents[2] / "_utils"
# Salt's loader puts _utils on sys.path while it loads; the tests have to do it themselves.
sys.path.insert(0, str(UTILS))

import outpost_service  # noqa: E402 - importable only once _utils is on sys.path
import outpost_service_windows as windows  # noqa: E402 - as above

NAME = "outpost-hello"
SC_QUERYEX = """
SERVICE_NAME: {name}
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 4  RUNNING
        WIN32_EXIT_CODE    : 0  (0x0)
        PID                : {pid}
        FLAGS              :
"""


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.naps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.naps.append(seconds)
        self.now += seconds


class FakeScm:
    """The Service Control Manager as Salt's win_service functions show it, on a fake clock."""

    def __init__(self, clock):
        self.clock = clock
        self.services = {}
        self.events = []
        # Seconds a stop stays "Stop Pending"; None: it never ends.
        self.stop_takes = 0
        self.stays_up = True

    def register(self, name, binary, status="Stopped"):
        self.services[name] = {"Status": status, "BinaryPath": binary, "stop_at": None}

    def info(self, name):
        service = self.services.get(name)
        if service is None:
            raise CommandExecutionError(
                f"Failed To Open {name}: The specified service does not exist as an installed "
                "service."
            )
        stop_at = service["stop_at"]
        if service["Status"] == "Stop Pending" and stop_at and self.clock.now >= stop_at:
            service["Status"] = "Stopped"
        return {"Status": service["Status"], "BinaryPath": service["BinaryPath"]}

    def available(self, name):
        return name in self.services

    def stop(self, name, timeout=90):
        self.events.append(("stop", name))
        service = self.services[name]
        if service["Status"] == "Running":
            service["Status"] = "Stop Pending"
            if self.stop_takes is not None:
                service["stop_at"] = self.clock.now + max(self.stop_takes, 0.001)
        return self.info(name)["Status"] == "Stopped"

    def start(self, name, timeout=90):
        self.events.append(("start", name))
        self.services[name]["Status"] = "Running" if self.stays_up else "Stopped"
        return self.stays_up

    def delete(self, name, timeout=90):
        self.events.append(("delete", name))
        self.services.pop(name, None)
        return True

    def run_all(self, cmd, **kwargs):
        if cmd[:2] == ["sc.exe", "queryex"]:
            return {"retcode": 0, "stdout": SC_QUERYEX.format(name=cmd[2], pid=4242), "stderr": ""}
        name = os.path.splitext(os.path.basename(cmd[0]))[0]
        self.events.append((cmd[1], name))
        if cmd[1] == "install":
            self.register(name, f'"{cmd[0]}"')
        return {"retcode": 0, "stdout": f"Installing service '{name}'", "stderr": "", "pid": 1}


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(windows, "monotonic", fake.monotonic)
    monkeypatch.setattr(windows, "sleep", fake.sleep)
    return fake


@pytest.fixture
def scm(clock):
    return FakeScm(clock)


@pytest.fixture
def salt_funcs(scm):
    return {
        "service.info": create_autospec(salt.modules.win_service.info, side_effect=scm.info),
        "service.available": create_autospec(
            salt.modules.win_service.available, side_effect=scm.available
        ),
        "service.start": create_autospec(salt.modules.win_service.start, side_effect=scm.start),
        "service.stop": create_autospec(salt.modules.win_service.stop, side_effect=scm.stop),
        "service.delete": create_autospec(salt.modules.win_service.delete, side_effect=scm.delete),
        "cmd.run_all": create_autospec(salt.modules.cmdmod.run_all, side_effect=scm.run_all),
        "file.set_perms": create_autospec(salt.modules.win_file.set_perms, return_value={}),
    }


@pytest.fixture
def backend(tmp_path, salt_funcs, clock):
    winsw = tmp_path / "bin" / "winsw.exe"
    winsw.parent.mkdir()
    winsw.write_bytes(b"MZ pretend WinSW 2.12.0")
    return windows.WindowsBackend(
        salt_funcs, service_dir=str(tmp_path / "services"), winsw_path=str(winsw)
    )


def make_spec(tmp_path, **changes):
    fields = {
        "name": NAME,
        "display_name": "outpost hello",
        "command": [
            str(tmp_path / "python" / "3.11.9" / "python.exe"),
            str(tmp_path / "apps" / "hello" / "releases" / "1.0.0" / "app.pyz"),
        ],
        "env": {"PORT": "8080", "SECRET_KEY": "s3cret"},
        "workdir": str(tmp_path / "apps" / "hello" / "releases" / "1.0.0"),
        "log_dir": str(tmp_path / "apps" / "hello" / "logs"),
        "stop_timeout": 30,
    }
    fields.update(changes)
    return outpost_service.ServiceSpec(**fields)


@pytest.fixture
def running(backend, tmp_path, scm):
    """An app defined, installed and running; the events of getting there are forgotten."""
    backend.define(make_spec(tmp_path))
    backend.apply(NAME)
    scm.events.clear()
    return backend


def read_xml(backend):
    return ET.parse(backend.xml_path(NAME)).getroot()  # noqa: S314 - written by the test


# -- restart and stop ------------------------------------------------------------------------------


def test_restart_waits_out_a_stop_pending_for_12_seconds(running, scm, clock, salt_funcs):
    scm.stop_takes = 12
    started = time.perf_counter()

    running.restart(NAME)

    assert time.perf_counter() - started < 1
    assert scm.events == [("stop", NAME), ("start", NAME)]
    salt_funcs["service.stop"].assert_called_once_with(NAME, timeout=0)
    assert 12 <= clock.now - 1000.0 <= 12 + windows.POLL_INTERVAL
    assert max(clock.naps) <= 1
    assert running.status(NAME)["state"] == "RUNNING"


def test_restart_fails_clearly_when_the_service_never_stops(running, scm, clock):
    scm.stop_takes = None

    with pytest.raises(outpost_service.ServiceError) as raised:
        running.restart(NAME)

    message = str(raised.value)
    assert f"service {NAME} is still 'Stop Pending' 45 s after a stop was asked" in message
    assert f"sc.exe queryex {NAME}" in message
    assert 45 <= clock.now - 1000.0 <= 45 + windows.POLL_INTERVAL
    assert ("start", NAME) not in scm.events


def test_restart_of_a_stopped_service_only_starts_it(running, scm, salt_funcs):
    scm.services[NAME]["Status"] = "Stopped"

    running.restart(NAME)

    salt_funcs["service.stop"].assert_not_called()
    assert scm.events == [("start", NAME)]


def test_stop_of_an_absent_service_does_nothing(backend, salt_funcs):
    backend.stop(NAME)

    salt_funcs["service.stop"].assert_not_called()


def test_start_fails_clearly_when_the_app_exits_at_once(running, scm):
    scm.services[NAME]["Status"] = "Stopped"
    scm.stays_up = False

    with pytest.raises(outpost_service.ServiceError, match="stopped right after it started"):
        running.start(NAME)


# -- the XML -------------------------------------------------------------------------------------


def test_spaces_and_quotes_survive_into_well_formed_xml(backend, tmp_path, salt_funcs):
    base = tmp_path / "Program Files" / "out post"
    command = [
        str(base / "python" / "python.exe"),
        str(base / "apps" / "hello" / "releases" / "1.0.0" / "app.pyz"),
        "--greeting",
        'say "hi" & <bye>',
        "ends in a backslash\\",
    ]
    spec = make_spec(
        tmp_path,
        display_name='outpost "hello" & <friends>',
        command=command,
        workdir=str(base / "apps" / "hello" / "releases" / "1.0.0"),
        log_dir=str(base / "apps" / "hello" / "logs"),
        env={"GREETING": 'a "quoted" <value> & more'},
    )

    backend.define(spec)
    backend.apply(NAME)

    root = read_xml(backend)
    assert root.findtext("name") == 'outpost "hello" & <friends>'
    assert root.findtext("executable") == command[0]
    arguments = root.findtext("arguments")
    assert arguments == subprocess.list2cmdline(command[1:])
    assert arguments == (
        f'"{command[1]}" --greeting "say \\"hi\\" & <bye>" "ends in a backslash\\\\"'
    )
    assert root.find("env").attrib == {"name": "GREETING", "value": 'a "quoted" <value> & more'}
    salt_funcs["cmd.run_all"].assert_any_call(
        [backend.wrapper_path(NAME), "install"],
        cwd=backend.app_dir(NAME),
        python_shell=False,
        ignore_retcode=True,
    )


def test_xml_carries_logs_stop_timeout_and_failure_restart(backend, tmp_path):
    backend.define(make_spec(tmp_path, stop_timeout=20))

    root = read_xml(backend)
    assert root.findtext("id") == NAME
    assert root.find("log").get("mode") == "roll-by-size"
    assert root.findtext("log/keepFiles") == str(windows.LOG_KEEP_FILES)
    assert root.findtext("stoptimeout") == "20 sec"
    assert root.find("onfailure").get("action") == "restart"
    assert root.find("serviceaccount") is None


def test_service_account_is_written_only_when_a_user_is_given(backend, tmp_path):
    backend.define(make_spec(tmp_path, user="NT SERVICE\\outpost-hello"))

    account = read_xml(backend).find("serviceaccount")
    assert account.findtext("domain") == "NT SERVICE"
    assert account.findtext("user") == "outpost-hello"
    assert account.find("allowservicelogon") is None


def test_define_is_idempotent(backend, tmp_path, salt_funcs):
    spec = make_spec(tmp_path)

    assert backend.define(spec) is True
    written = os.stat(backend.xml_path(NAME)).st_mtime_ns
    backend.apply(NAME)

    assert backend.define(spec) is False
    assert os.stat(backend.xml_path(NAME)).st_mtime_ns == written
    assert salt_funcs["file.set_perms"].call_count == 1
    assert sorted(os.listdir(backend.app_dir(NAME))) == [
        "applied.json",
        f"{NAME}.exe",
        f"{NAME}.xml",
    ]


def test_xml_is_locked_down_before_the_environment_goes_in(backend, tmp_path, salt_funcs):
    def still_empty(path, grant_perms=None, deny_perms=None, inheritance=True, reset=False):
        assert os.path.getsize(path) == 0
        return {}

    salt_funcs["file.set_perms"].side_effect = still_empty

    backend.define(make_spec(tmp_path, user="NT SERVICE\\outpost-hello"))

    (path,) = salt_funcs["file.set_perms"].call_args.args
    kwargs = salt_funcs["file.set_perms"].call_args.kwargs
    assert path == backend.xml_path(NAME) + ".new"
    assert set(kwargs["grant_perms"]) == {
        windows.SYSTEM_SID,
        windows.ADMINISTRATORS_SID,
        windows.service_sid(NAME),
    }
    assert kwargs["inheritance"] is False
    assert kwargs["reset"] is True


def test_service_sid_matches_what_windows_derives():
    """TrustedInstaller's SID is published; sc.exe showsid derives it the same way."""
    expected = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    assert windows.service_sid("TrustedInstaller") == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"env": {"DATABASE_URL": "postgres://u:p%PATH%w@db/x"}},
        {"command": ["C:\\python.exe", "%TEMP%\\app.pyz"]},
        {"env": {"TOKEN": "abc\x01def"}},
    ],
)
def test_values_winsw_would_mangle_are_refused_without_showing_them(backend, tmp_path, changes):
    with pytest.raises(SaltInvocationError) as raised:
        backend.define(make_spec(tmp_path, **changes))

    assert "%PATH%" not in str(raised.value)
    assert "abc" not in str(raised.value)
    assert not os.path.exists(backend.xml_path(NAME))


def test_a_missing_wrapper_is_reported_before_anything_is_written(backend, tmp_path):
    os.remove(backend.winsw_path)

    with pytest.raises(outpost_service.ServiceError, match="apply outpost.winsw first"):
        backend.define(make_spec(tmp_path))


# -- apply ---------------------------------------------------------------------------------------


def test_apply_installs_and_starts_a_new_service(backend, tmp_path, scm):
    backend.define(make_spec(tmp_path))

    backend.apply(NAME)

    assert scm.events == [("install", NAME), ("start", NAME)]
    with open(backend.wrapper_path(NAME), "rb") as copied:
        assert copied.read() == b"MZ pretend WinSW 2.12.0"


def test_leftover_registration_is_uninstalled_then_installed(backend, tmp_path, scm):
    """An install that broke halfway left a registration pointing at another wrapper."""
    scm.register(NAME, '"C:\\old place\\winsw.exe"', status="Stopped")
    backend.define(make_spec(tmp_path))

    backend.apply(NAME)

    assert scm.events == [("delete", NAME), ("install", NAME), ("start", NAME)]
    assert scm.services[NAME]["BinaryPath"] == f'"{backend.wrapper_path(NAME)}"'


def test_registration_of_an_install_that_never_finished_is_redone(backend, tmp_path, scm):
    """WinSW registered the service, then the run died before outpost recorded it."""
    backend.define(make_spec(tmp_path))
    scm.register(NAME, f'"{backend.wrapper_path(NAME)}"', status="Running")

    backend.apply(NAME)

    assert scm.events == [("stop", NAME), ("delete", NAME), ("install", NAME), ("start", NAME)]


def test_changed_environment_restarts_without_registering_again(running, tmp_path, scm):
    assert running.define(make_spec(tmp_path, env={"PORT": "8081"})) is True

    running.apply(NAME)

    assert scm.events == [("stop", NAME), ("start", NAME)]


def test_changed_display_name_registers_again(running, tmp_path, scm):
    running.define(make_spec(tmp_path, display_name="outpost hello (EU)"))

    running.apply(NAME)

    assert scm.events == [("stop", NAME), ("delete", NAME), ("install", NAME), ("start", NAME)]


def test_new_wrapper_is_copied_in_while_the_service_is_stopped(running, tmp_path, scm):
    with open(running.winsw_path, "wb") as stream:
        stream.write(b"MZ pretend WinSW 2.12.1")

    assert running.define(make_spec(tmp_path)) is True
    running.apply(NAME)

    assert scm.events == [("stop", NAME), ("start", NAME)]
    with open(running.wrapper_path(NAME), "rb") as copied:
        assert copied.read() == b"MZ pretend WinSW 2.12.1"


def test_unchanged_definition_leaves_the_service_alone(running, tmp_path, scm):
    running.define(make_spec(tmp_path))

    running.apply(NAME)

    assert scm.events == []


def test_failed_winsw_install_says_why(backend, tmp_path, salt_funcs):
    salt_funcs["cmd.run_all"].side_effect = lambda cmd, **kwargs: {
        "retcode": -1,
        "stdout": "",
        "stderr": "Installation failure: Service with id 'outpost-hello' already exists",
    }
    backend.define(make_spec(tmp_path))

    with pytest.raises(outpost_service.ServiceError, match=r"exit code -1\): Installation"):
        backend.apply(NAME)


# -- status and remove ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("windows_status", "expected"),
    [
        ("Running", {"state": "RUNNING", "running": True, "pid": 4242}),
        ("Stop Pending", {"state": "STOP_PENDING", "running": False, "pid": 4242}),
        ("Start Pending", {"state": "START_PENDING", "running": False, "pid": 4242}),
        ("Stopped", {"state": "STOPPED", "running": False, "pid": None}),
    ],
)
def test_status_shapes(running, scm, windows_status, expected):
    scm.services[NAME]["Status"] = windows_status

    assert running.status(NAME) == expected


def test_status_of_an_unregistered_service_is_absent(backend):
    assert backend.status(NAME) == {"state": "ABSENT", "running": False, "pid": None}


def test_status_does_not_call_an_unreachable_scm_absent(backend, salt_funcs):
    salt_funcs["service.info"].side_effect = CommandExecutionError("Failed to connect to the SCM")
    salt_funcs["service.available"].side_effect = None
    salt_funcs["service.available"].return_value = True

    with pytest.raises(outpost_service.ServiceError, match="could not read the state"):
        backend.status(NAME)


def test_remove_stops_unregisters_and_deletes_the_wrapper_folder(running, scm):
    assert running.remove(NAME) is True

    assert scm.events == [("stop", NAME), ("delete", NAME)]
    assert not os.path.exists(running.app_dir(NAME))
    assert running.remove(NAME) is False


def test_remove_clears_a_registration_outpost_never_defined(backend, scm):
    """Without an XML there is no stoptimeout to read; the default one bounds the stop."""
    scm.register(NAME, '"C:\\elsewhere\\winsw.exe"', status="Running")
    scm.stop_takes = 5

    assert backend.remove(NAME) is True

    assert scm.events == [("stop", NAME), ("delete", NAME)]
    assert NAME not in scm.services


# -- importing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["outpost_service", "outpost_service_windows"])
def test_either_module_can_be_imported_first(first):
    """The two modules import each other; neither order may fail or split ServiceError in two."""
    script = (
        f"import sys; sys.path.insert(0, {str(UTILS)!r}); import {first}; "
        "import outpost_service, outpost_service_windows as w; "
        "assert w.outpost_service.ServiceError is outpost_service.ServiceError"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_protect_folder_is_inherited_by_everything_in_it(backend, salt_funcs):
    """settings.json holds the app's environment; Windows ignores the POSIX mode it is written
    with, so the app folder's ACL must keep other local users out."""
    backend.protect_folder(r"C:\outpost\apps\hello", user="svc-hello")

    args, kwargs = salt_funcs["file.set_perms"].call_args
    assert args == (r"C:\outpost\apps\hello",)
    assert kwargs["inheritance"] is False
    assert kwargs["reset"] is True
    applies = {grant["applies_to"] for grant in kwargs["grant_perms"].values()}
    assert applies == {"this_folder_subfolders_files"}
    assert len(kwargs["grant_perms"]) == 3


def test_the_app_log_rolls_by_size_with_the_retention_asked_for(backend, tmp_path):
    backend.define(make_spec(tmp_path, log_max_bytes=3 * 1024 * 1024, log_backups=7))

    root = read_xml(backend)
    assert root.find("log").get("mode") == "roll-by-size"
    assert root.findtext("log/sizeThreshold") == str(3 * 1024)
    assert root.findtext("log/keepFiles") == "7"
