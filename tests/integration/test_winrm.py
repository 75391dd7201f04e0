"""
Windows minions over WinRM: real pywinrm on the real master (the outpost_winrm runner and the
client-missing reactor) against the WinRM stand-in (tests/standins/winrm.py), whose salt-minion
service is a real salt-minion daemon started from what the bootstrap installed and seeded.
"""

import hashlib
import pathlib
import re
import time

import pytest
import salt.utils.event

from tests.support.events import decisions, wait_for
from tests.support.jobcache import kept_texts
from tests.support.winrm import HOST, INSTALLER, PASSWORD

pytestmark = pytest.mark.slow

PKI = r"C:\ProgramData\Salt Project\Salt\conf\pki\minion"


@pytest.fixture(scope="module")
def windows_host(winrm_site, salt_master, short_root):
    service = winrm_site.serve(short_root / "wsock")
    try:
        yield service
    finally:
        service.stop()
        # The next session's master must not wait for a minion that is gone.
        salt_master.salt_key_cli().run("-d", HOST, "-y")


@pytest.fixture(scope="module")
def salt_run(salt_master):
    return salt_master.salt_run_cli(timeout=300)


@pytest.fixture(scope="module")
def returns():
    """Every runner return and event of this module, for the search for secrets: the event
    listener forgets events after two minutes, so each test keeps what it caused."""
    return []


def keep_events(returns, event_listener, salt_master, since):
    events = event_listener.get_events([(salt_master.id, "*")], after_time=since)
    returns.extend(f"{event.tag} {event.data!r}" for event in events)


@pytest.fixture(scope="module")
def bootstrapped(windows_host, salt_run, returns, event_listener, salt_master):
    started = time.time()
    done = salt_run.run("outpost_winrm.bootstrap", HOST)
    returns.append(done.stdout)
    keep_events(returns, event_listener, salt_master, started)
    assert done.returncode == 0, done
    assert done.data["result"] is True, done.data
    return done.data, started


def answers(salt_master, timeout=10):
    done = salt_master.salt_cli(timeout=timeout).run("test.ping", minion_tgt=HOST)
    return done.data is True


def test_bootstrap_uploads_installs_keys_and_the_minion_answers(
    bootstrapped, windows_host, winrm_site, salt_master
):
    report, _ = bootstrapped
    host = windows_host.host

    (install,) = host.installs
    assert install["sha256"] == hashlib.sha256(winrm_site.installer).hexdigest()
    assert install["program"].endswith(INSTALLER)
    assert install["arguments"] == [
        "/S",
        f"/master=127.0.0.1:{winrm_site.master_port}",
        f"/minion-name={HOST}",
        "/start-minion=0",
    ]
    assert report["installer"]["pieces"] > 1

    accepted = pathlib.Path(salt_master.config["pki_dir"]) / "minions" / HOST
    assert accepted.read_bytes().strip() == host.read(rf"{PKI}\minion.pub").strip()
    assert answers(salt_master)
    assert host.temp_files() == []


def test_a_10_kb_bootstrap_script_goes_through_in_pieces(bootstrapped, windows_host, winrm_site):
    report, _ = bootstrapped
    script = report["bootstrap_script"]

    assert len(winrm_site.script) >= 10_000
    assert script["pieces"] >= 2
    assert script["sha256"] == hashlib.sha256(b"\xef\xbb\xbf" + winrm_site.script).hexdigest()
    assert "bootstrap script ran" in script["output"]
    assert max(len(line) for line in windows_host.host.commands) <= 8191


def test_the_private_key_never_rides_a_command_line(bootstrapped, windows_host):
    host = windows_host.host
    private = host.read(rf"{PKI}\minion.pem").decode()
    body = [line for line in private.splitlines() if line and not line.startswith("-----")]

    assert "PRIVATE KEY" in private
    assert not any(body[3] in line for line in host.commands)
    assert not any(body[3] in _powershell_text(line) for line in host.commands)
    assert any(body[3].encode() in _b64_decoded(data) for _, data in host.stdin_seen)


def test_recover_after_the_minion_stopped_it_answers_again(
    bootstrapped, windows_host, salt_master, salt_run, returns, event_listener
):
    windows_host.host.kill_service()
    assert not answers(salt_master, timeout=3)
    start = time.time()

    done = salt_run.run("outpost_winrm.recover", HOST)
    returns.append(done.stdout)
    keep_events(returns, event_listener, salt_master, start)

    assert done.data["result"] is True, done.data
    assert done.data["state_before"] == "STOPPED"
    assert answers(salt_master)


def test_the_reactor_recovers_a_missing_client_once_per_interval(
    bootstrapped, windows_host, salt_master, event_listener, returns
):
    windows_host.host.kill_service()
    start = time.time()

    with salt.utils.event.get_master_event(
        salt_master.config, salt_master.config["sock_dir"], listen=False
    ) as bus:
        for _ in range(3):
            bus.fire_event({"last_seen": start - 900}, f"outpost/client/{HOST}/missing")

    assert wait_for(
        lambda: len(decisions(event_listener, salt_master, HOST, "salt-minion", start)) == 3, 180
    )
    made = decisions(event_listener, salt_master, HOST, "salt-minion", start)
    assert made.count("recover") == 1, made
    assert set(made) <= {"recover", "merged", "throttled"}, made
    assert answers(salt_master)

    later = time.time()
    windows_host.host.kill_service()
    with salt.utils.event.get_master_event(
        salt_master.config, salt_master.config["sock_dir"], listen=False
    ) as bus:
        bus.fire_event({"last_seen": later - 900}, f"outpost/client/{HOST}/missing")
    assert wait_for(
        lambda: decisions(event_listener, salt_master, HOST, "salt-minion", later) == ["throttled"]
    )
    keep_events(returns, event_listener, salt_master, start)
    assert not windows_host.host.service_running()
    windows_host.host.start_service()  # leave the client as the next test expects it


def test_credentials_absent_from_logs_events_and_returns(
    bootstrapped, windows_host, salt_master, event_listener, returns
):
    _, started = bootstrapped
    private = windows_host.host.read(rf"{PKI}\minion.pem").decode()
    secrets = [PASSWORD] + [line for line in private.splitlines()[1:-1] if len(line) > 40][:3]

    keep_events(returns, event_listener, salt_master, started)
    assert any(text.startswith(f"outpost/winrm/{HOST}/bootstrapped ") for text in returns)
    assert any(f"outpost/remediation/{HOST}/salt-minion/recover " in text for text in returns)
    texts = list(returns)
    texts.append(pathlib.Path(salt_master.config["log_file"]).read_text(errors="replace"))
    texts += kept_texts(salt_master).values()

    for secret in secrets:
        assert not any(secret in text for text in texts), secret[:6]


# -- helpers ----------------------------------------------------------------------------------


def _powershell_text(line):
    import base64

    match = re.search(r"-EncodedCommand (\S+)", line)
    return base64.b64decode(match.group(1)).decode("utf-16-le") if match else ""


def _b64_decoded(data):
    import base64

    return base64.b64decode(re.sub(rb"\s+", b"", data))
