"""
outpost_vault and the outpost_vault ext_pillar against the Vault stand-in, through real hvac over
real HTTP; and the stand-in's own answers, checked against what Vault answers.
"""

import importlib.util
import os
import time
import uuid

import hvac
import hvac.exceptions
import pytest
import requests
import yaml

import outpost_vault
from tests.conftest import REPO


@pytest.fixture
def new_role(vault_server):
    """A role of its own at the custom AppRole mount, so a test can set its TTLs."""

    def make(token_ttl=3600, token_max_ttl=86400, policies=("outpost-master",), **overrides):
        name = f"role-{uuid.uuid4().hex[:8]}"
        role_id, secret_id = vault_server.standin.add_approle(
            name, list(policies), vault_server.auth_mount, token_ttl, token_max_ttl
        )
        auth = {
            "method": "approle",
            "mount": vault_server.auth_mount,
            "role_id": role_id,
            "secret_id": secret_id,
        }
        return outpost_vault.VaultClient(vault_server.opts(auth=auth, **overrides))

    return make


@pytest.fixture
def path():
    return f"clients/c-{uuid.uuid4().hex[:8]}/hello"


def logins(vault_server):
    return vault_server.standin.count("POST", f"auth/{vault_server.auth_mount}/login")


def ref(mount, path, key=None):
    fields = {"mount": mount, "path": path}
    if key:
        fields["key"] = key
    return {"vault": fields}


# -- KV versions, references ---------------------------------------------------------------------


def test_kv_v1_and_v2_mounts_side_by_side(vault_server, new_role, path):
    vault_server.mount_kv("legacy", version=1)
    client = new_role(mounts={"legacy": {"version": 1}})

    client.write_secret("secret", path, {"db_password": "v2-one"})
    client.write_secret("secret", path, {"db_password": "v2-two"})
    client.write_secret("legacy", path, {"db_password": "v1-only"})

    assert client.read_secret("secret", path) == {"db_password": "v2-two"}
    assert client.read_secret("legacy", path) == {"db_password": "v1-only"}
    assert vault_server.standin.versions("secret", path) == [1, 2]
    assert vault_server.get("legacy", path) == {"db_password": "v1-only"}
    # "secret" is not configured: its version came from sys/mounts.
    assert client.kv_version("secret") == 2


def test_kv_v2_version_history_and_metadata_through_hvac(vault_server, path):
    vault_server.put("secret", path, {"k": "first"})
    vault_server.put("secret", path, {"k": "second"})
    direct = hvac.Client(url=vault_server.url, token=vault_server.root_token)
    kv = direct.secrets.kv.v2

    metadata = kv.read_secret_metadata(path, mount_point="secret")["data"]
    old = kv.read_secret_version(
        path, version=1, mount_point="secret", raise_on_deleted_version=True
    )
    kv.delete_latest_version_of_secret(path, mount_point="secret")
    deleted = kv.read_secret_version(path, mount_point="secret", raise_on_deleted_version=False)

    assert metadata["current_version"] == 2
    assert sorted(metadata["versions"]) == ["1", "2"]
    assert old["data"]["data"] == {"k": "first"}
    assert deleted["data"]["metadata"]["deletion_time"] != ""
    assert vault_server.get("secret", path) is None


@pytest.mark.parametrize(
    ("fields", "field", "fix"),
    [
        (
            {"mount": "secret", "path": "data/clients/c1/hello"},
            "vault.path",
            "path: clients/c1/hello",
        ),
        (
            {"mount": "secret/data", "path": "clients/c1"},
            "vault.mount",
            "{mount: secret, path: clients/c1}",
        ),
        (
            {"mount": "secret", "path": "/v1/secret/data/c1"},
            "vault.path",
            "{mount: secret, path: c1}",
        ),
        ({"mount": "/v1/secret", "path": "c1"}, "vault.mount", "{mount: secret, path: c1}"),
        ({"mount": "secret", "path": "secret/data/c1"}, "vault.path", "{mount: secret, path: c1}"),
    ],
)
def test_a_malformed_reference_is_refused_with_the_fix_in_the_message(fields, field, fix):
    with pytest.raises(outpost_vault.BadReference) as refused:
        outpost_vault.parse_reference({"vault": fields})

    assert str(refused.value).startswith(f"{field}: ")
    assert fix in str(refused.value)


def test_parse_reference_fills_in_the_minion_id_and_refuses_one_that_escapes():
    reference = ref("secret", "clients/{minion_id}/hello", "db")

    assert outpost_vault.parse_reference(reference, "client-1") == (
        "secret",
        "clients/client-1/hello",
        "db",
    )
    with pytest.raises(outpost_vault.BadReference, match="minion id"):
        outpost_vault.parse_reference(reference, "../client-2")


def test_resolve_returns_plain_values_unchanged_and_looks_references_up(vault_server, path):
    vault_server.put("secret", path, {"db": "s3cr3t-resolve"})
    opts = {"outpost": {"vault": vault_server.opts()}}

    assert outpost_vault.resolve(opts, "plain") == "plain"
    assert outpost_vault.resolve(opts, 8080) == 8080
    assert outpost_vault.resolve(opts, ref("secret", path, "db")) == "s3cr3t-resolve"


def test_a_missing_secret_or_key_names_mount_and_path_but_never_a_value(vault_server, path):
    vault_server.put("secret", path, {"db": "never-shown-1"})
    opts = {"outpost": {"vault": vault_server.opts()}}

    with pytest.raises(outpost_vault.SecretNotFound) as missing:
        outpost_vault.resolve(opts, ref("secret", path + "-gone", "db"))
    with pytest.raises(outpost_vault.SecretNotFound) as no_key:
        outpost_vault.resolve(opts, ref("secret", path, "api_key"))

    assert str(missing.value) == f"mount secret, path {path}-gone: no secret there"
    assert str(no_key.value) == f"mount secret, path {path}: the secret has no key 'api_key'"
    assert "never-shown-1" not in str(no_key.value)


# -- tokens --------------------------------------------------------------------------------------


def test_a_short_lived_token_is_renewed_before_it_expires(vault_server, new_role, path):
    vault_server.put("secret", path, {"db": "x"})
    client = new_role(token_ttl=2, token_max_ttl=600)
    before = logins(vault_server), vault_server.standin.count("POST", "auth/token/renew-self")

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert client.read_secret("secret", path) == {"db": "x"}
        time.sleep(0.3)

    assert logins(vault_server) - before[0] == 1
    assert vault_server.standin.count("POST", "auth/token/renew-self") > before[1]


def test_a_token_at_its_max_ttl_is_replaced_by_a_fresh_login(vault_server, new_role, path):
    vault_server.put("secret", path, {"db": "x"})
    client = new_role(token_ttl=2, token_max_ttl=3)
    before = logins(vault_server)

    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert client.read_secret("secret", path) == {"db": "x"}
        time.sleep(0.3)

    assert logins(vault_server) - before >= 2


def test_a_token_revoked_behind_the_clients_back_gets_one_fresh_login(vault_server, new_role, path):
    vault_server.put("secret", path, {"db": "x"})
    client = new_role()
    client.read_secret("secret", path)
    before = logins(vault_server)

    vault_server.standin.expire_tokens()

    assert client.read_secret("secret", path) == {"db": "x"}
    assert logins(vault_server) == before + 1


def test_a_path_the_policy_does_not_grant_is_access_denied(vault_server, new_role, path):
    vault_server.standin.add_policy("only-shared", {"secret/data/shared/*": ["read"]})
    vault_server.put("secret", path, {"db": "x"})
    client = new_role(policies=("only-shared",), mounts={"secret": {"version": 2}})

    with pytest.raises(outpost_vault.AccessDenied, match=f"mount secret, path {path}: .*403"):
        client.read_secret("secret", path)


def test_bad_approle_credentials_fail_naming_the_login_mount(vault_server, path):
    auth = {"mount": vault_server.auth_mount, "role_id": vault_server.role_id, "secret_id": "no"}
    client = outpost_vault.VaultClient(vault_server.opts(auth=auth))

    with pytest.raises(outpost_vault.VaultUnavailable) as failed:
        client.read_secret("secret", path)

    assert f"AppRole login at auth/{vault_server.auth_mount}" in str(failed.value)
    assert "invalid role or secret ID" in str(failed.value)


# -- outages, cache ------------------------------------------------------------------------------


def test_vault_down_or_sealed_is_vault_unavailable_naming_mount_and_path(vault_server, path):
    vault_server.put("secret", path, {"db": "x"})
    client = outpost_vault.VaultClient(vault_server.opts(mounts={"secret": {"version": 2}}))
    client.read_secret("secret", path)

    with vault_server.outage(), pytest.raises(outpost_vault.VaultUnavailable) as down:
        client.read_secret("secret", path)
    vault_server.standin.seal()
    try:
        with pytest.raises(outpost_vault.VaultUnavailable) as sealed:
            client.read_secret("secret", path)
    finally:
        vault_server.standin.unseal()

    assert str(down.value).startswith(f"mount secret, path {path}: Vault at ")
    assert "unreachable" in str(down.value)
    assert "sealed or down" in str(sealed.value)
    assert client.read_secret("secret", path) == {"db": "x"}


def test_reads_are_cached_briefly_and_a_write_drops_the_cached_copy(vault_server, new_role, path):
    vault_server.put("secret", path, {"db": "one"})
    client = new_role(cache_ttl=30, mounts={"secret": {"version": 2}})
    reads = lambda: vault_server.standin.count("GET", f"/secret/data/{path}")  # noqa: E731

    client.read_secret("secret", path)
    client.read_secret("secret", path)
    assert reads() == 1
    client.write_secret("secret", path, {"db": "two"})

    assert client.read_secret("secret", path) == {"db": "two"}
    assert reads() == 2


def test_client_from_opts_gives_one_client_per_process_and_setting(vault_server):
    opts = {"outpost": {"vault": vault_server.opts()}}

    assert outpost_vault.client_from_opts(opts) is outpost_vault.client_from_opts(dict(opts))
    assert outpost_vault.client_from_opts(opts) is not outpost_vault.client_from_opts(
        {"outpost": {"vault": vault_server.opts(timeout=7)}}
    )


def test_the_embedded_default_reads_and_writes_a_local_file_only_its_owner_reads(tmp_path):
    conf = tmp_path / "master"
    opts = {"conf_file": str(conf), "outpost": {}}
    client = outpost_vault.client_from_opts(opts)

    client.write_secret("secret", "clients/c1/hello", {"db": "dev-only"})

    secrets_file = tmp_path / outpost_vault.SECRETS_FILE
    assert isinstance(client, outpost_vault.FileSecrets)
    assert yaml.safe_load(secrets_file.read_text()) == {
        "secret": {"clients/c1/hello": {"db": "dev-only"}}
    }
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    assert outpost_vault.resolve(opts, ref("secret", "clients/c1/hello", "db")) == "dev-only"
    client.delete_secret("secret", "clients/c1/hello")
    with pytest.raises(outpost_vault.SecretNotFound, match="mount secret, path clients/c1/hello"):
        client.read_secret("secret", "clients/c1/hello")


def test_an_incomplete_configuration_names_the_setting(vault_server):
    with pytest.raises(outpost_vault.BadConfig, match="outpost:vault:auth:role_id"):
        outpost_vault.VaultClient({"url": vault_server.url, "auth": {}})
    with pytest.raises(outpost_vault.BadConfig, match="outpost:vault:mounts:kv:version"):
        outpost_vault.VaultClient(vault_server.opts(mounts={"kv": {"version": 3}}))


# -- the stand-in answers as Vault does ----------------------------------------------------------


def test_the_standin_answers_403_and_404_with_vaults_error_bodies(vault_server):
    base = vault_server.url + "/v1/secret/data/nothing-here"
    denied = requests.get(base, headers={"X-Vault-Token": "hvs.not-a-token"}, timeout=5)
    missing = requests.get(base, headers={"X-Vault-Token": vault_server.root_token}, timeout=5)

    assert denied.status_code == 403
    assert denied.json() == {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
    assert missing.status_code == 404
    assert missing.json() == {"errors": []}


def test_the_standin_token_ttl_runs_out_and_renew_self_extends_it(vault_server):
    role_id, secret_id = vault_server.standin.add_approle(
        "ttl-check", ["outpost-master"], vault_server.auth_mount, token_ttl=2, token_max_ttl=30
    )
    client = hvac.Client(url=vault_server.url)
    client.auth.approle.login(role_id, secret_id, mount_point=vault_server.auth_mount)

    first = client.auth.token.lookup_self()["data"]["ttl"]
    renewed = client.auth.token.renew_self(increment=4)["auth"]["lease_duration"]
    time.sleep(4.5)

    assert first in (1, 2)
    assert renewed == 4
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup_self()


# -- the ext_pillar ------------------------------------------------------------------------------


def load_ext_pillar(opts):
    spec = importlib.util.spec_from_file_location(
        "outpost_vault_pillar", os.path.join(REPO, "_pillar", "outpost_vault.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = opts
    return module


def client_pillar(key="db"):
    return {
        "outpost": {
            "apps": {
                "hello": {
                    "port": 8080,
                    "env": {
                        "LOG_LEVEL": "info",
                        "DATABASE_PASSWORD": ref("secret", "clients/{minion_id}/hello", key),
                    },
                }
            }
        }
    }


def test_ext_pillar_gives_each_client_only_its_own_secret(vault_server):
    vault_server.put("secret", "clients/unit-a/hello", {"db": "a-only-secret"})
    vault_server.put("secret", "clients/unit-b/hello", {"db": "b-only-secret"})
    pillar = load_ext_pillar({"outpost": {"vault": vault_server.opts()}})

    for_a = pillar.ext_pillar("unit-a", client_pillar())
    for_b = pillar.ext_pillar("unit-b", client_pillar())

    assert for_a == {
        "outpost": {"apps": {"hello": {"env": {"DATABASE_PASSWORD": "a-only-secret"}}}}
    }
    assert "b-only-secret" not in repr(for_a)
    assert for_b["outpost"]["apps"]["hello"]["env"]["DATABASE_PASSWORD"] == "b-only-secret"


def test_ext_pillar_refuses_a_path_of_another_client(vault_server):
    vault_server.put("secret", "clients/unit-b/hello", {"db": "b-only-secret"})
    pillar = load_ext_pillar({"outpost": {"vault": vault_server.opts()}})
    stolen = {"outpost": {"env": {"X": ref("secret", "clients/unit-b/hello", "db")}}}

    got = pillar.ext_pillar("unit-a", stolen)

    error = got["outpost"]["env"]["X"]["vault_error"]
    assert "clients/unit-b/hello is another client's" in error
    assert "b-only-secret" not in repr(got)


def test_ext_pillar_turns_failures_into_errors_and_asks_a_down_vault_once(vault_server):
    pillar = load_ext_pillar({"outpost": {"vault": vault_server.opts()}})
    tree = client_pillar()
    tree["outpost"]["apps"]["other"] = {"env": {"TOKEN": ref("secret", "shared/other", "t")}}
    tree["outpost"]["apps"]["bad"] = {"env": {"T": ref("secret", "data/shared/x", "t")}}

    missing = pillar.ext_pillar("unit-c", tree)
    with vault_server.outage():
        down = pillar.ext_pillar("unit-c", tree)

    apps = missing["outpost"]["apps"]
    assert apps["hello"]["env"]["DATABASE_PASSWORD"] == {
        "vault_error": "mount secret, path clients/unit-c/hello: no secret there"
    }
    assert "{mount: secret, path: shared/x}" in apps["bad"]["env"]["T"]["vault_error"]
    errors = [
        down["outpost"]["apps"]["hello"]["env"]["DATABASE_PASSWORD"]["vault_error"],
        down["outpost"]["apps"]["other"]["env"]["TOKEN"]["vault_error"],
    ]
    assert "unreachable" in errors[0]
    assert errors[1].startswith("mount secret, path shared/other: not asked, since earlier")
    assert errors[0] in errors[1]


def test_ext_pillar_with_no_references_changes_nothing_and_asks_nothing(vault_server):
    pillar = load_ext_pillar({"outpost": {"vault": vault_server.opts()}})
    before = len(vault_server.standin.requests)

    assert pillar.ext_pillar("unit-d", {"outpost": {"apps": {"hello": {"port": 1}}}}) == {}
    assert len(vault_server.standin.requests) == before


# -- the client side: shiv_app refuses a secret the master could not give ----------------------


def load_shiv_app():
    spec = importlib.util.spec_from_file_location(
        "shiv_app_module", os.path.join(REPO, "_modules", "shiv_app.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (
            {"vault": {"mount": "secret"}, "vault_error": "mount secret, path p: no secret there"},
            "env: DB: mount secret, path p: no secret there",
        ),
        (
            {"vault": {"mount": "secret", "path": "p", "key": "k"}},
            "env: DB: a secret reference the master did not resolve",
        ),
        (["a", "list"], "env: DB: expected a string"),
    ],
)
def test_shiv_app_refuses_an_env_value_that_is_not_a_string(value, said):
    from salt.exceptions import SaltInvocationError

    with pytest.raises(SaltInvocationError) as refused:
        load_shiv_app()._validate_env({"LOG_LEVEL": "info", "DB": value})

    assert str(refused.value).startswith(said)
