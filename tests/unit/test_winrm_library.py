"""outpost_winrm without a host: transport checks, credentials, commands, reactor decisions."""

from unittest import mock

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_registry
import outpost_vault
import outpost_winrm

# The real test.ping, before the reactor tests' fixture stands in for it.
ANSWERS_PING = outpost_winrm.answers_ping


def opts_with(host, **winrm):
    return {"outpost": {"winrm": dict(winrm, hosts={"win-1": host})}}


HTTPS = {
    "endpoint": "https://win-1.example.com:5986/wsman",
    "transport": "basic",
    "username": "admin",
    "password": "pw",
}


def checked(opts):
    outpost_winrm.check_transport(outpost_winrm.host_settings(opts, "win-1"))


@pytest.mark.parametrize(
    "host",
    [
        HTTPS,
        dict(HTTPS, endpoint="http://win-1:5985/wsman", transport="ntlm"),
        dict(HTTPS, endpoint="http://win-1:5985/wsman", transport="kerberos"),
        dict(HTTPS, endpoint="http://win-1:5985/wsman", transport="credssp"),
    ],
)
def test_https_or_an_encrypting_transport_is_accepted(host):
    checked(opts_with(host))


@pytest.mark.parametrize(
    ("host", "field"),
    [
        (dict(HTTPS, endpoint="http://win-1:5985/wsman"), "endpoint"),
        (dict(HTTPS, endpoint="http://win-1:5985/wsman", transport="plaintext"), "endpoint"),
        (
            dict(
                HTTPS, endpoint="http://win-1/wsman", transport="ntlm", message_encryption="never"
            ),
            "message_encryption",
        ),
        (dict(HTTPS, server_cert_validation="ignore"), "server_cert_validation"),
    ],
)
def test_an_insecure_transport_is_refused_naming_the_field(host, field):
    with pytest.raises(outpost_winrm.InsecureTransport, match=f"win-1:{field}"):
        checked(opts_with(host))


@pytest.mark.parametrize(
    ("host", "field"),
    [
        (dict(HTTPS, endpoint="win-1:5986"), "endpoint"),
        (dict(HTTPS, transport="telnet"), "transport"),
    ],
)
def test_bad_settings_name_the_field(host, field):
    with pytest.raises(SaltInvocationError, match=f"win-1:{field}"):
        checked(opts_with(host))


def test_insecure_transport_is_refused_before_any_connection():
    """Nothing may reach the host, not even the installer fetch, when the transport is bad."""
    opts = opts_with(dict(HTTPS, endpoint="http://win-1:5985/wsman"), master="salt")
    protocol = mock.create_autospec(outpost_winrm.Remote)
    fetch = mock.create_autospec(outpost_winrm.fetch_installer)
    with (
        mock.patch("winrm.protocol.Protocol") as pywinrm,
        mock.patch.object(outpost_winrm, "Remote", protocol),
        mock.patch.object(outpost_winrm, "fetch_installer", fetch),
        pytest.raises(outpost_winrm.InsecureTransport),
    ):
        outpost_winrm.bootstrap(opts, "win-1")
    pywinrm.assert_not_called()
    protocol.assert_not_called()
    fetch.assert_not_called()


def test_recover_is_refused_before_any_connection_too():
    opts = opts_with(dict(HTTPS, endpoint="http://win-1:5985/wsman"))
    with (
        mock.patch("winrm.protocol.Protocol") as pywinrm,
        pytest.raises(outpost_winrm.InsecureTransport),
    ):
        outpost_winrm.recover(opts, "win-1")
    pywinrm.assert_not_called()


def test_an_unknown_host_or_a_bad_minion_id_is_named():
    with pytest.raises(SaltInvocationError, match="hosts:win-2: no such WinRM host"):
        outpost_winrm.host_settings(opts_with(HTTPS), "win-2")
    with pytest.raises(SaltInvocationError, match="minion_id"):
        outpost_winrm.host_settings(opts_with(HTTPS), "a b&c")


def test_credentials_come_from_vault_references():
    reference = {"vault": {"mount": "kv", "path": "winrm/{minion_id}", "key": "password"}}
    opts = opts_with(dict(HTTPS, password=reference))
    resolve = mock.create_autospec(
        outpost_vault.resolve,
        side_effect=lambda o, v, m: "from-vault" if isinstance(v, dict) else v,
    )
    with mock.patch.object(outpost_vault, "resolve", resolve):
        found = outpost_winrm.credentials(opts, outpost_winrm.host_settings(opts, "win-1"))
    assert found == ("admin", "from-vault")
    resolve.assert_any_call(opts, reference, "win-1")


def test_a_missing_secret_names_the_setting():
    reference = {"vault": {"mount": "kv", "path": "winrm/win-1", "key": "password"}}
    opts = opts_with(dict(HTTPS, password=reference))
    missing = outpost_vault.SecretNotFound("mount kv, path winrm/win-1: no such secret")
    with (
        mock.patch.object(outpost_vault, "resolve", side_effect=missing),
        pytest.raises(CommandExecutionError, match="hosts:win-1:username: mount kv"),
    ):
        outpost_winrm.credentials(opts, outpost_winrm.host_settings(opts, "win-1"))
    opts = opts_with(dict(HTTPS, password=""))
    host = outpost_winrm.host_settings(opts, "win-1")
    with pytest.raises(SaltInvocationError, match="hosts:win-1:password: missing"):
        outpost_winrm.credentials(opts, host)


def test_install_commands_use_the_installers_own_silent_switches():
    exe = outpost_winrm.install_command(r"C:\T\Salt-Minion-3008.4-Py3-AMD64-Setup.exe", "m:1", "w")
    msi = outpost_winrm.install_command(r"C:\T\Salt-Minion-3008.4-Py3-AMD64.msi", "m", "w")
    assert exe == (
        r'start "" /wait "C:\T\Salt-Minion-3008.4-Py3-AMD64-Setup.exe" '
        "/S /master=m:1 /minion-name=w /start-minion=0"
    )
    assert msi == (
        r'start "" /wait msiexec /i "C:\T\Salt-Minion-3008.4-Py3-AMD64.msi" /qn /norestart '
        'MASTER=m MINION_ID=w START_MINION=""'
    )


def test_a_wrong_installer_hash_is_refused_on_the_master(tmp_path):
    installer = tmp_path / "Salt-Minion-3008.4-Py3-AMD64-Setup.exe"
    installer.write_bytes(b"not the pinned installer")
    opts = {"outpost": {"winrm": {"installer": {"source": str(installer), "sha256": "0" * 64}}}}
    with pytest.raises(CommandExecutionError, match="installer:sha256: .* has sha256"):
        outpost_winrm.fetch_installer(opts)
    opts["outpost"]["winrm"]["installer"]["source"] = str(tmp_path / "setup.bat")
    with pytest.raises(SaltInvocationError, match="installer:source: 'setup.bat'"):
        outpost_winrm.fetch_installer(opts)


def test_a_bad_master_address_is_named():
    with pytest.raises(SaltInvocationError, match="outpost:winrm:master"):
        outpost_winrm.master_address({"outpost": {"winrm": {"master": "salt & calc"}}})


def test_a_trailing_newline_passes_neither_check():
    """'^...$' with match let 'win-1\n' and 'salt\n' through."""
    opts = opts_with(HTTPS)
    opts["outpost"]["winrm"]["hosts"]["win-1\n"] = dict(opts["outpost"]["winrm"]["hosts"]["win-1"])
    with pytest.raises(SaltInvocationError, match="minion_id"):
        outpost_winrm.host_settings(opts, "win-1\n")
    with pytest.raises(SaltInvocationError, match="outpost:winrm:master"):
        outpost_winrm.master_address({"outpost": {"winrm": {"master": "salt\n"}}})


def test_powershell_clixml_errors_become_text():
    stderr = (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/'
        '2004/04"><S S="Error">Restart-Service : Cannot find it_x000D__x000A_</S>'
        '<S S="progress">noise</S></Objs>'
    )
    assert outpost_winrm._powershell_errors(stderr) == "Restart-Service : Cannot find it"


# -- the reactor's decisions ------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    return outpost_registry.Registry(path=str(tmp_path / "registry.sqlite"))


@pytest.fixture(autouse=True)
def silent(request):
    """The missing client does not answer test.ping (unless a test says otherwise)."""
    with mock.patch.object(outpost_winrm, "answers_ping", return_value=False) as ping:
        yield ping


def missing(opts, registry, events, client="win-1"):
    return outpost_winrm.handle_missing(
        opts, registry, f"outpost/client/{client}/missing", lambda tag, data: events.append(tag)
    )


def test_a_missing_client_is_recovered_once_per_interval(registry):
    opts, events = opts_with(HTTPS, recover_interval=600), []
    recover = mock.create_autospec(
        outpost_winrm.recover, return_value={"answered_after": 3.0, "state_before": "STOPPED"}
    )
    with mock.patch.object(outpost_winrm, "recover", recover):
        first = missing(opts, registry, events)
        second = missing(opts, registry, events)
    assert first["decision"] == "recover"
    assert second["decision"] == "throttled"
    recover.assert_called_once_with(opts, "win-1")
    assert events == [
        "outpost/remediation/win-1/salt-minion/recover",
        "outpost/remediation/win-1/salt-minion/throttled",
    ]


def test_a_failed_recovery_alerts_and_still_counts(registry):
    opts, events = opts_with(HTTPS), []
    failing = mock.create_autospec(
        outpost_winrm.recover, side_effect=outpost_winrm.WinRMError("host unreachable")
    )
    with mock.patch.object(outpost_winrm, "recover", failing):
        first = missing(opts, registry, events)
        second = missing(opts, registry, events)
    assert first["decision"] == "alert"
    assert "host unreachable" in first["result"]
    assert second["decision"] == "throttled"
    assert "outpost/alert/win-1/salt-minion" in events


def test_a_repeat_during_a_recovery_is_merged(registry):
    opts, events = opts_with(HTTPS), []
    registry.claim_remediation("win-1", "salt-minion")
    with mock.patch.object(outpost_winrm, "recover") as recover:
        assert missing(opts, registry, events)["decision"] == "merged"
    recover.assert_not_called()


def test_clients_that_are_no_winrm_hosts_are_left_alone(registry):
    events = []
    with mock.patch.object(outpost_winrm, "recover") as recover:
        done = missing(opts_with(HTTPS), registry, events, client="linux-1")
    assert "not a WinRM host" in done["ignored"]
    recover.assert_not_called()
    assert events == []


def test_a_client_that_answers_is_not_recovered(registry, silent):
    """Any minion could fire outpost/client/<host>/missing and have the master restart that
    host's salt-minion over WinRM."""
    opts, events = opts_with(HTTPS), []
    silent.return_value = True
    with mock.patch.object(outpost_winrm, "recover") as recover:
        done = missing(opts, registry, events)

    assert done["decision"] == "not-confirmed"
    recover.assert_not_called()
    silent.assert_called_once_with(opts, "win-1", timeout=outpost_winrm.CONFIRM_TIMEOUT)
    assert events == ["outpost/remediation/win-1/salt-minion/not-confirmed"]
    assert registry.claim_remediation("win-1", "salt-minion") is not None


@pytest.mark.parametrize("client", ["*", "win-*", "win-1,win-2"])
def test_a_missing_event_for_a_target_expression_is_ignored(registry, client):
    opts = {"outpost": {"winrm": {"hosts": {client: HTTPS}}}}
    with mock.patch.object(outpost_winrm, "recover") as recover:
        done = missing(opts, registry, [], client=client)
    assert "ignored" in done
    recover.assert_not_called()


def test_a_recovery_claim_left_by_a_stopped_master_is_taken_again(registry):
    """A master stopped mid-recovery left its claim running: every later missing event of that
    host was merged and it was never recovered again."""
    opts, events = opts_with(HTTPS, answer_timeout=0, read_timeout=0), []
    registry.claim_remediation("win-1", "salt-minion")
    with (
        mock.patch.object(outpost_winrm, "ABANDON_MARGIN", 0),
        mock.patch.object(outpost_winrm, "CONFIRM_TIMEOUT", 0),
        mock.patch.object(
            outpost_winrm, "recover", return_value={"answered_after": 1, "state_before": "STOPPED"}
        ),
    ):
        done = missing(opts, registry, events)
    assert done["decision"] == "recover"
    decisions = [entry["decision"] for entry in registry.remediations("win-1", "1970-01-01")]
    assert decisions == ["abandoned", "recover"]


def test_the_ping_targets_the_one_client_as_a_list():
    local = mock.Mock()
    local.cmd.return_value = {"win-1": True}
    with mock.patch("salt.client.get_local_client", return_value=local):
        assert ANSWERS_PING({"conf_file": "/dev/null"}, "win-1") is True
    assert local.cmd.call_args.args[0] == ["win-1"]
    assert local.cmd.call_args.kwargs["tgt_type"] == "list"
