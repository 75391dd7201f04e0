"""
Secrets from Vault on the real master: the outpost_vault ext_pillar over the Vault stand-in, two
real minions, a real deploy of the example app with secrets in its environment.
"""

import json
import os
import pathlib
import subprocess
import threading
import time
import uuid

import pytest
import salt.utils.event
import yaml

from demo.supervisor import Supervisord
from tests.conftest import app_python, client_overrides, free_port, sync_client
from tests.support.jobcache import kept_texts
from tests.support.states import healthz

pytestmark = pytest.mark.slow

CLIENT_B = "client-vault"
APP = "vaulted"
ENV_KEY = "outpost:apps:vaulted:env"


@pytest.fixture(scope="module")
def client_b(salt_master, short_root):
    """A second client with its own supervisord; it logs at debug, so the leak search also
    covers what Salt says only at that level."""
    supervisor = Supervisord(short_root / "sv-vault").start()
    overrides = client_overrides(short_root / "outpost-vault", supervisor)
    overrides["log_level_logfile"] = "debug"
    factory = salt_master.salt_minion_daemon(CLIENT_B, overrides=overrides)
    try:
        with factory.started():
            sync_client(factory)
            yield {
                "factory": factory,
                "supervisor": supervisor,
                "root": short_root / "outpost-vault",
            }
    finally:
        supervisor.stop()


@pytest.fixture(scope="module")
def secrets():
    """Every secret value this module puts in Vault for the deploy; the leak search looks for
    each of them."""
    return []


def new_secret(secrets, label):
    value = f"{label}-{uuid.uuid4().hex}"
    secrets.append(value)
    return value


def pillar_apps(release, ports):
    """Each client's app settings; its secrets by reference to its own folder in Vault."""
    env = {
        "LOG_LEVEL": "info",
        "DATABASE_PASSWORD": {
            "vault": {
                "mount": "secret",
                "path": "clients/{minion_id}/vaulted",
                "key": "db_password",
            }
        },
        "API_KEY": {
            "vault": {"mount": "legacy", "path": "clients/{minion_id}/vaulted", "key": "api_key"}
        },
    }
    app = {
        "version": "1.1.0",
        "source": release["source"],
        "source_hash": f"sha256={release['sha256']}",
        "python": app_python(),
        "health_timeout": 20,
        "env": env,
    }
    return (
        "{% set ports = " + json.dumps(ports) + " %}\n"
        "{% set app = " + json.dumps(app) + " %}\n"
        "{% do app.update(port=ports[grains['id']]) %}\n"
        "outpost:\n  apps:\n    vaulted: {{ app | json }}\n"
        "  unrelated: still here\n"
    )


@pytest.fixture(scope="module")
def pillar(pillar_tree, hello_releases, salt_minion, client_b, vault_server):
    vault_server.mount_kv("legacy", version=1)
    ports = {salt_minion.id: free_port(), CLIENT_B: free_port()}
    top = pillar_tree / "top.sls"
    top_before = top.read_text()
    (pillar_tree / "vault_apps.sls").write_text(pillar_apps(hello_releases["1.1.0"], ports))
    top.write_text(yaml.safe_dump({"base": {"*": ["vault_apps"]}}))
    yield {"ports": ports, "tree": pillar_tree}
    top.write_text(top_before)
    for factory in (salt_minion, client_b["factory"]):
        factory.salt_call_cli().run("saltutil.refresh_pillar", "wait=True")


def pillar_get(salt_cli, minion, key):
    """``key`` of a freshly compiled pillar (pillar.get alone answers from the minion's copy),
    unmasked: Salt 3008 shows every pillar value as asterisks otherwise."""
    refreshed = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=minion)
    assert refreshed.data is True, refreshed
    ret = salt_cli.run("pillar.get", key, "unmask=True", minion_tgt=minion)
    assert ret.returncode == 0, ret
    return ret.data


def apply_apps(salt_cli, test=False):
    args = ["outpost.apps", *(["test=True"] if test else [])]
    ret = salt_cli.run("state.apply", *args, minion_tgt=CLIENT_B, _timeout=240)
    assert isinstance(ret.data, dict), ret
    (result,) = ret.data.values()
    return result


def app_environ(salt_cli):
    """The live app process's environment, read the way only its owner can."""
    pid = salt_cli.run("shiv_app.get_status", APP, minion_tgt=CLIENT_B).data["pid"]
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
    return pid, dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def wait_past_cache():
    """The master reuses a secret for cache_ttl (2 s in the tests) seconds."""
    time.sleep(2.5)


def put_client_secrets(vault_server, minion, db_password, api_key):
    vault_server.put("secret", f"clients/{minion}/vaulted", {"db_password": db_password})
    vault_server.put("legacy", f"clients/{minion}/vaulted", {"api_key": api_key})


@pytest.fixture(scope="module")
def bus_capture(salt_master):
    """Every event on the master's bus while this module runs (the session's event listener
    forgets events after two minutes)."""
    captured, stop = [], threading.Event()
    bus = salt.utils.event.get_master_event(
        salt_master.config, salt_master.config["sock_dir"], listen=True
    )

    def listen():
        while not stop.is_set():
            event = bus.get_event(wait=0.5, full=True)
            if event:
                captured.append(event)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    yield captured
    stop.set()
    thread.join(timeout=10)
    bus.destroy()


@pytest.fixture(scope="module")
def deployed(vault_server, secrets, pillar, salt_cli, bus_capture):
    """The full deploy: Vault holds client-vault's secrets, one state.apply installs the app."""
    values = {"db": new_secret(secrets, "db"), "api": new_secret(secrets, "api")}
    put_client_secrets(vault_server, CLIENT_B, values["db"], values["api"])
    wait_past_cache()

    predicted = apply_apps(salt_cli, test=True)
    applied = apply_apps(salt_cli)
    return {"values": values, "predicted": predicted, "applied": applied}


# -- tests ---------------------------------------------------------------------------------------


def test_a_client_gets_its_own_secrets_and_only_its_own(
    vault_server, pillar, salt_cli, salt_minion
):
    put_client_secrets(vault_server, salt_minion.id, "iso-a-db", "iso-a-api")
    put_client_secrets(vault_server, CLIENT_B, "iso-b-db", "iso-b-api")
    wait_past_cache()

    env_a = pillar_get(salt_cli, salt_minion.id, ENV_KEY)
    env_b = pillar_get(salt_cli, CLIENT_B, ENV_KEY)
    everything_a = salt_cli.run("pillar.items", "unmask=True", minion_tgt=salt_minion.id).data

    assert env_a == {"LOG_LEVEL": "info", "DATABASE_PASSWORD": "iso-a-db", "API_KEY": "iso-a-api"}
    assert env_b == {"LOG_LEVEL": "info", "DATABASE_PASSWORD": "iso-b-db", "API_KEY": "iso-b-api"}
    assert "iso-b" not in json.dumps(everything_a)
    assert everything_a["outpost"]["unrelated"] == "still here"


def test_a_pillar_naming_another_clients_path_gets_an_error_not_the_secret(
    vault_server, pillar, salt_cli, salt_minion
):
    put_client_secrets(vault_server, CLIENT_B, "steal-b-db", "steal-b-api")
    stolen = {
        "vault": {"mount": "secret", "path": f"clients/{CLIENT_B}/vaulted", "key": "db_password"}
    }
    sls = pillar["tree"] / "vault_steal.sls"
    sls.write_text(yaml.safe_dump({"outpost": {"stolen": stolen}}))
    top = pillar["tree"] / "top.sls"
    top.write_text(yaml.safe_dump({"base": {"*": ["vault_apps"], salt_minion.id: ["vault_steal"]}}))
    try:
        got = pillar_get(salt_cli, salt_minion.id, "outpost:stolen")
    finally:
        top.write_text(yaml.safe_dump({"base": {"*": ["vault_apps"]}}))
        sls.unlink()

    assert "steal-b" not in json.dumps(got)
    assert f"clients/{CLIENT_B}/vaulted is another client's" in got["vault_error"]


def test_a_deploy_puts_the_secrets_in_the_apps_environment_without_showing_them(
    deployed, salt_cli, client_b
):
    values = deployed["values"]

    assert deployed["predicted"]["result"] is None
    assert deployed["applied"]["result"] is True, deployed["applied"]
    assert deployed["applied"]["changes"]["installed"] == "1.1.0"
    _, environ = app_environ(salt_cli)
    assert environ["DATABASE_PASSWORD"] == values["db"]
    assert environ["API_KEY"] == values["api"]
    settings = client_b["root"] / "apps" / APP / "settings.json"
    assert oct(settings.stat().st_mode & 0o777) == "0o600"


def test_a_rotated_secret_is_reported_changed_by_name_and_reaches_the_app(
    deployed, vault_server, secrets, salt_cli
):
    old_pid, _ = app_environ(salt_cli)
    rotated = new_secret(secrets, "db-rotated")
    vault_server.put("secret", f"clients/{CLIENT_B}/vaulted", {"db_password": rotated})
    wait_past_cache()

    predicted = apply_apps(salt_cli, test=True)
    applied = apply_apps(salt_cli)

    expected = {"env": {"changed": ["DATABASE_PASSWORD"]}}
    assert predicted["result"] is None
    assert predicted["changes"]["settings"] == expected
    assert applied["result"] is True, applied
    assert applied["changes"]["settings"] == expected
    new_pid, environ = app_environ(salt_cli)
    assert new_pid != old_pid
    assert environ["DATABASE_PASSWORD"] == rotated


def test_a_missing_secret_fails_the_app_state_naming_mount_and_path(
    deployed, vault_server, salt_cli, pillar
):
    """The rest of the pillar still renders, and the running release is left alone."""
    before_pid, before_env = app_environ(salt_cli)
    vault_server.standin.state.mounts["legacy"]["data"].pop(f"clients/{CLIENT_B}/vaulted")
    wait_past_cache()
    try:
        predicted = apply_apps(salt_cli, test=True)
        failed = apply_apps(salt_cli)
        unrelated = pillar_get(salt_cli, CLIENT_B, "outpost:unrelated")
    finally:
        vault_server.put(
            "legacy", f"clients/{CLIENT_B}/vaulted", {"api_key": before_env["API_KEY"]}
        )

    for result in (predicted, failed):
        assert result["result"] is False
        assert result["changes"] == {}
        assert (
            f"env: API_KEY: mount legacy, path clients/{CLIENT_B}/vaulted: no secret there"
            in result["comment"]
        )
    assert unrelated == "still here"
    assert app_environ(salt_cli)[0] == before_pid
    assert healthz(pillar["ports"][CLIENT_B])["version"] == "1.1.0"


def test_vault_down_fails_clearly_and_the_running_release_stays(
    deployed, vault_server, salt_cli, pillar
):
    before_pid, _ = app_environ(salt_cli)
    wait_past_cache()

    with vault_server.outage():
        failed = apply_apps(salt_cli)
        unrelated = pillar_get(salt_cli, CLIENT_B, "outpost:unrelated")
        status = salt_cli.run("shiv_app.get_status", APP, minion_tgt=CLIENT_B).data

    assert failed["result"] is False
    assert failed["changes"] == {}
    assert "env: " in failed["comment"]
    assert f"path clients/{CLIENT_B}/vaulted: Vault at {vault_server.url}" in failed["comment"]
    assert unrelated == "still here"
    assert status["current"] == "1.1.0"
    assert status["healthy"] is True
    assert status["pid"] == before_pid
    wait_past_cache()
    assert apply_apps(salt_cli)["result"] is True


def test_tokens_expiring_mid_run_are_renewed_or_replaced_and_nothing_fails(
    deployed, vault_server, salt_cli, salt_minion
):
    standin = vault_server.standin
    put_client_secrets(vault_server, salt_minion.id, "ttl-a-db", "ttl-a-api")
    logins_before = standin.count("POST", f"auth/{vault_server.auth_mount}/login")
    renewals_before = standin.count("POST", "auth/token/renew-self")
    standin.set_role_ttl(vault_server.role, vault_server.auth_mount, token_ttl=2, token_max_ttl=5)
    # The master's workers hold long-lived tokens: make them run out now, mid-run.
    standin.expire_tokens()
    try:
        seen = []
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            seen.append(pillar_get(salt_cli, salt_minion.id, f"{ENV_KEY}:DATABASE_PASSWORD"))
            time.sleep(0.7)
        applied = apply_apps(salt_cli)
    finally:
        standin.set_role_ttl(vault_server.role, vault_server.auth_mount, 3600, 86400)

    assert set(seen) == {"ttl-a-db"}
    assert applied["result"] is True, applied
    # Which worker renews and which logs in again depends on how the master spreads the
    # requests; tests/unit/test_vault_client.py checks each path on its own.
    renewals = standin.count("POST", "auth/token/renew-self") - renewals_before
    logins = standin.count("POST", f"auth/{vault_server.auth_mount}/login") - logins_before
    assert logins >= 1
    assert renewals + logins >= 2


# -- the leak search -----------------------------------------------------------------------------


def log_files(root):
    """Every log file under the test root: daemons', supervisord's and its programs', apps'."""
    for path in pathlib.Path(root).rglob("*"):
        if path.is_file() and (path.suffix == ".log" or path.parent.name == "logs"):
            yield path


def test_no_secret_reaches_the_job_cache_the_event_bus_the_logs_or_the_process_list(
    deployed, secrets, salt_master, bus_capture, short_root, client_b
):
    events = list(bus_capture)
    places = {
        f"event {index} {event['tag']}": json.dumps(event, default=str)
        for index, event in enumerate(events)
    }
    places.update(
        {f"log {path}": path.read_text(errors="replace") for path in log_files(short_root)}
    )
    places.update(kept_texts(salt_master))
    places["ps"] = subprocess.run(
        ["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True
    ).stdout

    found = sorted(name for name, text in places.items() if any(s in text for s in secrets))

    assert len(secrets) >= 3
    assert len(events) > 10
    assert any(name.startswith("job cache") for name in places)
    assert any(str(client_b["supervisor"].root) in name for name in places)
    assert any("/apps/vaulted/logs/" in name for name in places)
    assert found == []
    assert os.environ.get("DATABASE_PASSWORD") is None
