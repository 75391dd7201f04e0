"""The supervisord backend against a real supervisord, over its XML-RPC interface."""

import pathlib
import sys

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
    environ = pathlib.Path(f"/proc/{after['pid']}/environ").read_bytes().split(b"\0")
    assert b"RELEASE=2" in environ


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


def test_the_server_is_found_as_supervisorctl_finds_it(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("[unix_http_server]\nfile=%(here)s/s.sock\n")
    assert outpost_supervisor.server_settings(str(conf)) == (
        f"unix://{tmp_path}/s.sock",
        None,
        None,
    )

    conf.write_text("[supervisorctl]\nserverurl=http://127.0.0.1:9002\nusername=ops\n")
    assert outpost_supervisor.server_settings(str(conf)) == ("http://127.0.0.1:9002", "ops", None)

    conf.write_text("[supervisorctl]\nserverurl=ftp://x\n")
    with pytest.raises(outpost_supervisor.SupervisorError, match="serverurl 'ftp://x'"):
        outpost_supervisor.connect(str(conf))
