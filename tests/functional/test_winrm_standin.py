"""
outpost_winrm's remote commands through real pywinrm against the WinRM stand-in (no Salt
daemons): pieces under the command-line limit, faults and refusals as Windows answers them.
"""

import hashlib

import pytest
import winrm.exceptions
import winrm.protocol

import outpost_winrm
from tests.standins import winrm as standin
from tests.support.winrm import bootstrap_script

USER, PASSWORD = "Administrator", "standin-pw-31f0"
WORK = r"C:\Windows\Temp\outpost-test"


@pytest.fixture(scope="module")
def service(tmp_path_factory, short_root):
    running = standin.serve(tmp_path_factory.mktemp("winrm"), short_root / "ws-f", USER, PASSWORD)
    yield running
    running.stop()


def host_settings(service, **overrides):
    host = {
        "minion_id": "win-f",
        "endpoint": service.endpoint,
        "transport": "basic",
        "server_cert_validation": "validate",
        "ca_trust_path": service.ca,
    }
    return dict(host, **overrides)


@pytest.fixture
def remote(service):
    with outpost_winrm.Remote(host_settings(service), USER, PASSWORD) as session:
        session.run(f'mkdir "{WORK}"', "work folder")
        yield session
        session.run(f'rmdir /s /q "{WORK}"', "clean up", check=False)


def test_a_10_kb_script_goes_through_in_pieces_under_the_limit(remote, service):
    script = bootstrap_script(10_240)
    before = len(service.host.commands)

    done = outpost_winrm.run_script(remote, WORK, script)

    sent = service.host.commands[before:]
    assert len(script) >= 10_000
    assert done["pieces"] >= 2
    assert sum(1 for line in sent if " echo " in line) == done["pieces"]
    assert max(len(line) for line in sent) <= 8191
    assert done["sha256"] == hashlib.sha256(b"\xef\xbb\xbf" + script).hexdigest()
    assert done["output"].strip() == "bootstrap script ran"
    assert not [name for name in service.host.temp_files() if name.endswith((".ps1", ".b64"))]


def test_an_upload_arrives_whole_and_is_hashed_on_the_host(remote, service):
    data = bytes(range(256)) * 200
    path = rf"{WORK}\blob.bin"

    remote.upload(data, path, "upload")

    assert service.host.read(path) == data
    assert remote.sha256(path, "hash") == hashlib.sha256(data).hexdigest()
    assert not service.host.exists(rf"{path}.b64")


def test_a_command_past_the_limit_fails_as_cmd_fails(service):
    """Sent raw, past outpost's own check: the host answers as cmd.exe does."""
    protocol = winrm.protocol.Protocol(
        service.endpoint,
        transport="basic",
        username=USER,
        password=PASSWORD,
        ca_trust_path=service.ca,
    )
    shell = protocol.open_shell()
    command = protocol.run_command(shell, "echo " + "x" * 8200)
    out, err, code = protocol.get_command_output(shell, command)
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)
    assert (out, err, code) == (b"", b"The command line is too long.\r\n", 1)


def test_outpost_refuses_to_send_a_command_past_the_limit(remote, service):
    before = len(service.host.commands)
    with pytest.raises(outpost_winrm.WinRMError, match="8201-character command line"):
        remote.run("echo " + "x" * 8196, "too long")
    assert len(service.host.commands) == before


def test_an_unknown_shell_is_a_wsman_fault(service):
    protocol = winrm.protocol.Protocol(
        service.endpoint,
        transport="basic",
        username=USER,
        password=PASSWORD,
        ca_trust_path=service.ca,
    )
    with pytest.raises(winrm.exceptions.WSManFaultError) as fault:
        protocol.run_command("00000000-0000-0000-0000-000000000000", "sc query salt-minion")
    assert fault.value.wsman_fault_code == 2150858843
    assert fault.value.fault_subcode == "w:InvalidSelectors"


def test_wrong_credentials_are_a_clear_error_without_the_password(service):
    wrong = "not-the-password-9a"
    remote = outpost_winrm.Remote(host_settings(service), USER, wrong)
    with pytest.raises(outpost_winrm.WinRMError, match="credentials were refused") as err:
        remote.__enter__()
    assert wrong not in str(err.value)


def test_an_untrusted_certificate_is_refused(service, tmp_path):
    other_ca, _, _ = standin.make_certificates(tmp_path / "other")
    remote = outpost_winrm.Remote(host_settings(service, ca_trust_path=other_ca), USER, PASSWORD)
    with pytest.raises(outpost_winrm.WinRMError, match="SSLError"):
        remote.__enter__()


def test_a_file_from_stdin_never_rides_the_command_line(remote, service):
    secret = b"-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWtleS1ib2R5LTQ0\n"
    before = len(service.host.commands)

    outpost_winrm.write_file_from_stdin(remote, rf"{WORK}\k\minion.pem", secret, "seed")

    assert service.host.read(rf"{WORK}\k\minion.pem") == secret
    sent = " ".join(service.host.commands[before:])
    assert "c2VjcmV0LWtleS1ib2R5LTQ0" not in sent
