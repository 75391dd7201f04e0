"""The supervisord backend against a real supervisord, over its XML-RPC interface."""

import os
import pathlib
import signal
import stat
import sys
import time

import pytest

import outpost_service
import outpost_supervisor
from demo.supervisor import Supervisord

pytestmark = pytest.mark.slow

PROGRAM = "outpost-rpc"


@pytest.fixture
def daemon(short_root, request):
    supervisor = Supervisord(short_root / f"rpc-{request.node.name[-20:]}").start()
    yield supervisor
    supervisor.stop()


def sleeper_spec(daemon, seconds=300, **env):
    return outpost_service.ServiceSpec(
        name=PROGRAM,
        display_name="rpc test",
        command=[sys.executable, "-c", f"import time; time.sleep({seconds})"],
        env=env,
        workdir=str(daemon.root),
        log_dir=str(daemon.root / "logs"),
        stop_timeout=5,
    )


def environ_after_exec(pid, timeout=10):
    """The program's environment: until supervisord's child has exec'd, /proc shows its own."""
    proc = pathlib.Path(f"/proc/{pid}")
    deadline = time.monotonic() + timeout
    while b"time.sleep" not in proc.joinpath("cmdline").read_bytes():
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    return proc.joinpath("environ").read_bytes().split(b"\0")


def backend_of(daemon):
    return outpost_service.SupervisordBackend(str(daemon.conf_file), str(daemon.include_dir))


def test_a_defined_program_starts_stops_and_goes(daemon):
    backend = backend_of(daemon)

    assert backend.define(sleeper_spec(daemon))
    backend.apply(PROGRAM)
    backend.start(PROGRAM)
    running = backend.status(PROGRAM)
    backend.stop(PROGRAM)
    stopped = backend.status(PROGRAM)
    backend.stop(PROGRAM)
    backend.start(PROGRAM)
    backend.start(PROGRAM)
    removed = backend.remove(PROGRAM)

    assert running["state"] == "RUNNING"
    assert running["pid"] > 0
    assert stopped == {"state": "STOPPED", "running": False, "pid": None}
    assert removed
    assert backend.status(PROGRAM)["state"] == "ABSENT"
    assert "outpost-rpc" not in daemon.ctl_run("status").stdout


def test_a_changed_definition_restarts_the_program_with_it(daemon):
    backend = backend_of(daemon)
    backend.define(sleeper_spec(daemon, RELEASE="1"))
    backend.apply(PROGRAM)
    backend.start(PROGRAM)
    before = backend.status(PROGRAM)["pid"]

    changed = backend.define(sleeper_spec(daemon, RELEASE="2"))
    backend.apply(PROGRAM)
    backend.start(PROGRAM)
    after = backend.status(PROGRAM)

    assert changed
    assert after["running"]
    assert after["pid"] != before
    assert b"RELEASE=2" in environ_after_exec(after["pid"])


def test_an_unchanged_definition_leaves_the_program_alone(daemon):
    backend = backend_of(daemon)
    backend.define(sleeper_spec(daemon))
    backend.apply(PROGRAM)
    backend.start(PROGRAM)
    before = backend.status(PROGRAM)["pid"]

    assert not backend.define(sleeper_spec(daemon))
    backend.apply(PROGRAM)

    assert backend.status(PROGRAM)["pid"] == before


def test_starting_an_unknown_program_names_it(daemon):
    with pytest.raises(outpost_service.ServiceError, match="startProcess: BAD_NAME: nothing"):
        backend_of(daemon).start("nothing")


def test_a_supervisord_that_is_gone_is_an_error_not_a_hang(short_root):
    conf = short_root / "gone.conf"
    conf.write_text(f"[supervisorctl]\nserverurl=unix://{short_root}/gone.sock\n")

    with pytest.raises(outpost_service.ServiceError, match="does not answer getProcessInfo"):
        outpost_service.SupervisordBackend(str(conf), str(short_root)).status(PROGRAM)


def test_credentials_from_the_supervisorctl_section_are_used_and_never_shown(short_root):
    """supervisord may ask for a user and password on its socket; supervisorctl reads them from
    its own section, and so does outpost."""
    secret = "pa:ss@w/rd"
    daemon = Supervisord(short_root / "auth", credentials=("ops", secret)).start()
    wrong = short_root / "wrong.conf"
    text = daemon.conf_file.read_text()
    wrong.write_text(text.replace(f"password={secret}", "password=nope"))
    try:
        status = outpost_service.SupervisordBackend(str(daemon.conf_file), "/").status(PROGRAM)
        with pytest.raises(outpost_service.ServiceError) as refused:
            outpost_service.SupervisordBackend(str(wrong), "/").status(PROGRAM)
    finally:
        daemon.stop()

    assert status["state"] == "ABSENT"
    assert "401" in str(refused.value)
    assert "nope" not in str(refused.value)
    assert secret not in str(refused.value)


def test_the_server_is_found_as_supervisorctl_finds_it(tmp_path, monkeypatch):
    """Debian's supervisord.conf has comments after its values, and supervisor expands
    %(here)s, %(ENV_X)s and %%: outpost read the comment as part of the socket's path."""
    monkeypatch.setenv("SV_DIR", "/run/sv")
    conf = tmp_path / "s.conf"
    conf.write_text(
        "[supervisorctl]\n"
        "serverurl=unix://%(ENV_SV_DIR)s/../sv/s.sock ; use a unix:// URL  for a unix socket\n"
        "username=ops   # the account\n"
        "password=p%%w;x\n"
    )
    assert outpost_supervisor.server_settings(str(conf)) == (
        "unix:///run/sv/s.sock",
        "ops",
        "p%w;x",
    )

    conf.write_text("[supervisorctl]\nserverurl=unix://%(here)s/s.sock\n")
    assert outpost_supervisor.server_settings(str(conf))[0] == f"unix://{tmp_path}/s.sock"

    conf.write_text("[supervisorctl]\n")
    assert outpost_supervisor.server_settings(str(conf))[0] == "http://localhost:9001"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[inet_http_server]\nport=127.0.0.1:9123\n", r"has no \[supervisorctl\] section"),
        ("[supervisorctl]\nserverurl=ftp://x\n", "serverurl 'ftp://x'"),
        ("[supervisorctl]\nserverurl=unix://%(ENV_NOT_SET_HERE)s\n", "serverurl in .* cannot"),
        ("[supervisorctl\n", "cannot read"),
    ],
)
def test_a_configuration_supervisorctl_could_not_use_is_named(tmp_path, text, error):
    conf = tmp_path / "s.conf"
    conf.write_text(text)

    with pytest.raises(outpost_service.ServiceError, match=error):
        outpost_service.SupervisordBackend(str(conf), str(tmp_path)).status(PROGRAM)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://localhost:abc", "does not answer getProcessInfo: nonnumeric port"),
        ("unix:///nowhere/s.sock", "at unix:///nowhere/s.sock .*does not answer getProcessInfo"),
    ],
)
def test_a_server_that_cannot_be_reached_is_named(tmp_path, url, error):
    conf = tmp_path / "s.conf"
    conf.write_text(f"[supervisorctl]\nserverurl={url}\n")

    with pytest.raises(outpost_service.ServiceError, match=error):
        outpost_service.SupervisordBackend(str(conf), str(tmp_path)).status(PROGRAM)


def test_a_wedged_supervisord_holds_a_status_call_for_seconds_not_minutes(daemon, monkeypatch):
    """Every call waited up to 120 s, and the beacon asks from the minion's main loop."""
    monkeypatch.setattr(outpost_supervisor, "CALL_TIMEOUT", 1)
    backend = backend_of(daemon)
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(outpost_service.ServiceError, match="timed out"):
            backend.status(PROGRAM)
    finally:
        daemon.process.send_signal(signal.SIGCONT)


def test_the_log_folder_keeps_other_users_out(daemon):
    """supervisord wrote the app's output 0644 in a 0755 folder: readable by every local user."""
    backend_of(daemon).define(sleeper_spec(daemon))

    assert stat.S_IMODE(os.stat(daemon.root / "logs").st_mode) == 0o700
