"""
Unit tests of cloudflared's service on Windows: the connector through the WinSW backend, with
Salt's win_service, cmdmod, win_file and reg functions mocked against their real signatures and
a fake clock, so nothing here needs Windows.
"""

import base64
import json
import os
import pathlib
import sys
import uuid
import xml.etree.ElementTree as ET
from unittest.mock import create_autospec

import pytest
import salt.modules.cmdmod
import salt.modules.reg
import salt.modules.win_file
import salt.modules.win_service
from salt.exceptions import CommandExecutionError, SaltInvocationError

UTILS = pathlib.Path(__file__).resolve().parents[2] / "_utils"
# Salt's loader puts _utils on sys.path while it loads; the tests have to do it themselves.
sys.path.insert(0, str(UTILS))

import outpost_cloudflared as cf  # noqa: E402 - importable only once _utils is on sys.path
import outpost_service  # noqa: E402 - as above
import outpost_service_windows as windows  # noqa: E402 - as above

NAME = cf.SERVICE_NAME
METRICS = "127.0.0.1:20241"
LEGACY_BINARY = '"C:\\Program Files (x86)\\cloudflared\\cloudflared.exe" tunnel run --token {}'


def make_token(tunnel=None):
    fields = {
        "a": "6b1c1e5a0e0c4f3e9d2b7a8c9d0e1f2a",
        "t": tunnel or str(uuid.uuid4()),
        "s": base64.b64encode(os.urandom(32)).decode(),
    }
    return base64.b64encode(json.dumps(fields).encode()).decode()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeWindows:
    """The Service Control Manager and the registry as Salt's functions show them."""

    def __init__(self, clock):
        self.clock = clock
        self.services = {}
        self.keys = set()
        self.events = []
        # Seconds a stop stays "Stop Pending"; None: it never ends.
        self.stop_takes = 0

    def register(self, name, binary, status="Stopped"):
        self.services[name] = {"Status": status, "BinaryPath": binary, "stop_at": None}

    def info(self, name):
        service = self.services.get(name)
        if service is None:
            raise CommandExecutionError(
                f"Failed To Open {name}: The specified service does not exist"
            )
        stop_at = service["stop_at"]
        if (
            service["Status"] == "Stop Pending"
            and stop_at is not None
            and self.clock.now >= stop_at
        ):
            service["Status"] = "Stopped"
        return {"Status": service["Status"], "BinaryPath": service["BinaryPath"]}

    def available(self, name):
        return name in self.services

    def start(self, name, timeout=90):
        self.events.append(("start", name))
        self.services[name]["Status"] = "Running"
        return True

    def stop(self, name, timeout=90):
        self.events.append(("stop", name))
        service = self.services[name]
        if service["Status"] == "Running":
            service["Status"] = "Stop Pending"
            if self.stop_takes is not None:
                service["stop_at"] = self.clock.now + self.stop_takes
        return self.info(name)["Status"] == "Stopped"

    def delete(self, name, timeout=90):
        self.events.append(("delete", name))
        self.services.pop(name, None)
        return True

    def run_all(self, cmd, **kwargs):
        if cmd[:2] == ["sc.exe", "queryex"]:
            return {"retcode": 0, "stdout": "        PID                : 4242\n", "stderr": ""}
        name = os.path.splitext(os.path.basename(cmd[0]))[0]
        self.events.append((cmd[1], name))
        if cmd[1] == "install":
            if name in self.services:
                message = f"Installation failure: Service with id '{name}' already exists"
                return {"retcode": -1, "stdout": "", "stderr": message}
            self.register(name, f'"{cmd[0]}"')
        return {"retcode": 0, "stdout": "", "stderr": ""}

    def key_exists(self, hive, key, use_32bit_registry=False):
        return (hive, key) in self.keys

    def delete_key_recursive(self, hive, key, use_32bit_registry=False):
        self.events.append(("delete key", key))
        self.keys.discard((hive, key))
        return {"Deleted": [f"{hive}\\{key}"], "Failed": []}


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(windows, "monotonic", fake.monotonic)
    monkeypatch.setattr(windows, "sleep", fake.sleep)
    return fake


@pytest.fixture
def machine(clock):
    return FakeWindows(clock)


@pytest.fixture
def salt_funcs(machine):
    def spec(function, side_effect=None, **kwargs):
        return create_autospec(function, side_effect=side_effect, **kwargs)

    return {
        "service.info": spec(salt.modules.win_service.info, machine.info),
        "service.available": spec(salt.modules.win_service.available, machine.available),
        "service.start": spec(salt.modules.win_service.start, machine.start),
        "service.stop": spec(salt.modules.win_service.stop, machine.stop),
        "service.delete": spec(salt.modules.win_service.delete, machine.delete),
        "cmd.run_all": spec(salt.modules.cmdmod.run_all, machine.run_all),
        "file.set_perms": spec(salt.modules.win_file.set_perms, return_value={}),
        "reg.key_exists": spec(salt.modules.reg.key_exists, machine.key_exists),
        "reg.delete_key_recursive": spec(
            salt.modules.reg.delete_key_recursive, machine.delete_key_recursive
        ),
    }


@pytest.fixture
def ready(monkeypatch):
    """The connector's /ready, as the test sets it."""
    state = {"ready": True, "probes": 0}

    def probe(metrics, timeout=2.0):
        state["probes"] += 1
        if state["ready"]:
            return True, f"http://{metrics}/ready: 4 connections", 4
        return False, f"http://{metrics}/ready answered HTTP 503 with 0 ready connections", 0

    monkeypatch.setattr(cf, "probe_ready", probe)
    monkeypatch.setattr(cf, "READY_PAUSE", 0)
    return state


@pytest.fixture
def layout(tmp_path):
    layout = cf.Layout(str(tmp_path / "outpost"), windows=True)
    os.makedirs(layout.bin_dir)
    with open(layout.binary, "wb") as stream:
        stream.write(b"MZ pretend cloudflared")
    return layout


@pytest.fixture
def backend(tmp_path, salt_funcs, layout):
    winsw = os.path.join(layout.bin_dir, "winsw.exe")
    with open(winsw, "wb") as stream:
        stream.write(b"MZ pretend WinSW 2.12.0")
    return windows.WindowsBackend(
        salt_funcs, service_dir=os.path.join(layout.root, "services"), winsw_path=winsw
    )


@pytest.fixture
def connector(layout, backend, salt_funcs, ready):
    return cf.Connector(layout, backend, salt_funcs)


def configure(layout, tunnel=None):
    rules = [{"service": "http_status:404"}] if tunnel else None
    os.makedirs(layout.config_dir, exist_ok=True)
    with open(layout.config_path, "w", encoding="utf-8") as stream:
        stream.write(cf.render_config(layout, METRICS, tunnel, rules))


def read_xml(backend):
    return ET.parse(backend.xml_path(NAME)).getroot()  # noqa: S314 - written by the test


def every_call(salt_funcs):
    """Every argument any Salt function was called with, as one text."""
    return repr([(name, mock.call_args_list) for name, mock in salt_funcs.items()])


# -- install and read back -----------------------------------------------------------------------


def test_a_remote_tunnels_token_goes_only_into_the_locked_down_xml(
    connector, layout, backend, machine, salt_funcs
):
    configure(layout)
    token = make_token()

    plan = connector.apply(token)

    assert plan["token"] == "changed"
    assert plan["service"] == {"old": "ABSENT", "new": "RUNNING"}
    assert token not in json.dumps(plan)
    root = read_xml(backend)
    assert root.find("env").attrib == {"name": "TUNNEL_TOKEN", "value": token}
    assert root.findtext("executable") == layout.binary
    assert token not in root.findtext("arguments")
    assert cf.split_windows_args(root.findtext("arguments")) == [
        "tunnel",
        "--no-autoupdate",
        "--config",
        layout.config_path,
        "--metrics",
        METRICS,
        "run",
    ]
    # The XML was restricted while still empty, then the token went in.
    (locked,) = [call.args[0] for call in salt_funcs["file.set_perms"].call_args_list]
    assert locked == backend.xml_path(NAME) + ".new"
    assert machine.services[NAME]["BinaryPath"] == f'"{backend.wrapper_path(NAME)}"'
    assert token not in every_call(salt_funcs)
    assert machine.events == [("install", NAME), ("start", NAME)]


def test_the_registered_command_line_is_read_back_through_service_info(
    connector, layout, backend, salt_funcs
):
    configure(layout)
    connector.apply(make_token())
    salt_funcs["service.info"].reset_mock()

    command = cf.check_registration(backend, layout, salt_funcs)

    assert command[command.index("--config") + 1] == layout.config_path
    salt_funcs["service.info"].assert_called_with(NAME)


def test_a_token_found_on_the_registered_command_line_fails_without_showing_it(
    connector, layout, backend, salt_funcs, machine
):
    configure(layout)
    token = make_token()
    connector.apply(token)
    machine.services[NAME]["BinaryPath"] += f" --token {token}"

    with pytest.raises(cf.CloudflaredError) as raised:
        cf.check_registration(backend, layout, salt_funcs)

    assert "BinaryPath carries a tunnel token" in str(raised.value)
    assert token not in str(raised.value)


def test_an_xml_whose_arguments_lack_the_config_fails(connector, layout, backend, salt_funcs):
    configure(layout)
    connector.apply(make_token())
    root = read_xml(backend)
    root.find("arguments").text = "tunnel --no-autoupdate run"
    ET.ElementTree(root).write(backend.xml_path(NAME))

    with pytest.raises(cf.CloudflaredError, match=r"lacks --config"):
        cf.check_registration(backend, layout, salt_funcs)


def test_a_locally_managed_tunnel_gets_a_credentials_file_and_no_token_in_the_xml(
    connector, layout, backend, salt_funcs
):
    tunnel = str(uuid.uuid4())
    configure(layout, tunnel)
    token = make_token(tunnel)

    connector.apply(token)

    assert read_xml(backend).find("env") is None
    with open(layout.credentials_path, encoding="utf-8") as stream:
        credentials = json.load(stream)
    assert credentials["TunnelID"] == tunnel
    assert token not in every_call(salt_funcs)


def test_a_token_of_another_tunnel_is_refused_before_anything_changes(
    connector, layout, backend, machine
):
    configure(layout, str(uuid.uuid4()))

    with pytest.raises(SaltInvocationError, match="^token: it belongs to another tunnel"):
        connector.apply(make_token())

    assert not os.path.exists(backend.xml_path(NAME))
    assert machine.events == []


def test_a_badly_shaped_token_is_refused_naming_token(connector, layout, machine):
    configure(layout)

    with pytest.raises(SaltInvocationError) as raised:
        connector.plan("eyJub3QiOiJhIHRva2VuIn0=")

    assert str(raised.value).startswith("token: ")
    assert "eyJ" not in str(raised.value)
    assert machine.events == []


# -- a second run and changes ---------------------------------------------------------------------


def test_a_second_run_changes_nothing(connector, layout, machine):
    configure(layout)
    token = make_token()
    connector.apply(token)
    machine.events.clear()

    assert connector.plan(token) == {}
    assert connector.apply(token) == {}
    assert machine.events == []


def test_a_new_token_is_only_reported_as_changed_and_restarts_the_service(
    connector, layout, machine
):
    configure(layout)
    connector.apply(make_token())
    machine.events.clear()
    token = make_token()

    plan = connector.plan(token)
    connector.apply(token)

    assert plan == {"token": "changed"}
    assert machine.events == [("stop", NAME), ("start", NAME)]


def test_a_changed_config_restarts_the_connector(connector, layout, machine):
    configure(layout)
    token = make_token()
    connector.apply(token)
    machine.events.clear()
    with open(layout.config_path, "a", encoding="utf-8") as stream:
        stream.write("# edited\n")

    assert connector.plan(token) == {"restart": "config.yml changed since the connector started"}
    connector.apply(token)

    assert machine.events == [("stop", NAME), ("start", NAME)]
    assert connector.plan(token) == {}


def test_a_connector_that_lost_its_edge_is_restarted(connector, layout, machine, ready, salt_funcs):
    configure(layout)
    token = make_token()
    connector.apply(token)
    machine.events.clear()
    ready["ready"] = False

    def start_connected(name, timeout=90):
        ready["ready"] = True
        return machine.start(name, timeout)

    salt_funcs["service.start"].side_effect = start_connected
    plan = connector.plan(token)
    connector.apply(token)

    assert plan["ready"]["new"] == "ready"
    assert "503" in plan["ready"]["old"]
    assert machine.events == [("stop", NAME), ("start", NAME)]


def test_a_connector_that_never_gets_ready_fails_the_apply(connector, layout, ready, monkeypatch):
    configure(layout)
    ready["ready"] = False
    monkeypatch.setattr(cf.time, "sleep", lambda seconds: None)

    with pytest.raises(cf.CloudflaredError, match="started but is not ready"):
        connector.apply(make_token(), ready_timeout=0)


# -- restarts ------------------------------------------------------------------------------------


def test_a_restart_waits_for_stopped_through_a_long_stop_pending(connector, layout, machine, clock):
    configure(layout)
    connector.apply(make_token())
    machine.events.clear()
    machine.stop_takes = 35

    connector.restart()

    assert machine.events == [("stop", NAME), ("start", NAME)]
    assert 35 <= clock.now - 1000.0 <= 35 + windows.POLL_INTERVAL


def test_a_restart_gives_up_when_the_service_never_stops(connector, layout, machine, clock):
    configure(layout)
    connector.apply(make_token())
    machine.events.clear()
    machine.stop_takes = None

    with pytest.raises(outpost_service.ServiceError, match="still 'Stop Pending'"):
        connector.restart()

    bound = cf.STOP_TIMEOUT + windows.STOP_MARGIN
    assert bound <= clock.now - 1000.0 <= bound + windows.POLL_INTERVAL
    assert ("start", NAME) not in machine.events


# -- what earlier installs left ------------------------------------------------------------------


def test_a_leftover_registration_of_our_service_is_replaced(connector, layout, backend, machine):
    """An earlier install registered outpost-cloudflared to another binary, token and all."""
    configure(layout)
    token = make_token()
    machine.register(NAME, LEGACY_BINARY.format(token), status="Running")

    connector.apply(token)

    assert machine.events == [("stop", NAME), ("delete", NAME), ("install", NAME), ("start", NAME)]
    assert machine.services[NAME]["BinaryPath"] == f'"{backend.wrapper_path(NAME)}"'


def test_cloudflareds_own_service_and_event_log_key_are_removed_first(
    connector, layout, machine, salt_funcs
):
    """`cloudflared service install` registered Cloudflared with the token on its command line,
    and its event-log key blocks the next install of it."""
    configure(layout)
    token = make_token()
    machine.register(cf.LEGACY_SERVICE, LEGACY_BINARY.format(token), status="Running")
    machine.keys.add((cf.LEGACY_EVENT_LOG_HIVE, cf.LEGACY_EVENT_LOG_KEY))

    plan = connector.plan(token)
    connector.apply(token)

    assert plan["leftovers"] == ["service Cloudflared", "event log source Cloudflared"]
    assert token not in json.dumps(plan)
    assert machine.events[:3] == [
        ("stop", cf.LEGACY_SERVICE),
        ("delete", cf.LEGACY_SERVICE),
        ("delete key", cf.LEGACY_EVENT_LOG_KEY),
    ]
    assert cf.LEGACY_SERVICE not in machine.services
    assert connector.plan(token) == {}


def test_a_half_installed_event_log_key_alone_is_removed(connector, layout, machine):
    configure(layout)
    machine.keys.add((cf.LEGACY_EVENT_LOG_HIVE, cf.LEGACY_EVENT_LOG_KEY))
    token = make_token()

    assert connector.plan(token)["leftovers"] == ["event log source Cloudflared"]
    connector.apply(token)

    assert ("delete key", cf.LEGACY_EVENT_LOG_KEY) in machine.events
    assert not machine.keys


def test_a_stranger_named_cloudflared_is_left_alone(connector, layout, machine):
    configure(layout)
    machine.register(cf.LEGACY_SERVICE, '"C:\\Tools\\watchdog.exe"', status="Running")

    connector.apply(make_token())

    assert cf.LEGACY_SERVICE in machine.services
    assert ("stop", cf.LEGACY_SERVICE) not in machine.events


# -- machine-wide paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "root",
    [
        "C:\\Users\\admin\\outpost",
        "c:\\users\\Default\\.cloudflared",
        "C:\\Windows\\System32\\config\\systemprofile\\.cloudflared",
        "outpost",
    ],
)
def test_a_root_under_a_user_profile_is_refused(root):
    with pytest.raises(SaltInvocationError, match="^root: "):
        cf.refuse_user_profile(root)


def test_a_machine_wide_root_is_taken():
    cf.refuse_user_profile("C:\\outpost")
    cf.refuse_user_profile("D:\\Program Files\\outpost")
    layout = cf.Layout("C:\\outpost", windows=True)
    assert layout.binary.endswith("cloudflared.exe")
