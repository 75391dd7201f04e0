"""
The cloudflare_zt execution and state modules, loaded by Salt's real loaders with master-like
settings, against the Cloudflare API stand-in behind Prism (every request and answer checked
against Cloudflare's OpenAPI spec). Every state runs with and without ``test=True``.
"""

import base64
import json
import logging

import pytest
from saltfactories.utils.functional import Loaders

from tests.conftest import REPO
from tests.support.fixtures_cloudflare import API_TOKEN, ZONE, cloudflare_settings

TUNNEL = "outpost-client-1"
CLIENT = "client-1"
HOST = f"hello.{ZONE}"
OTHER_HOST = f"shop.{ZONE}"
POLICY = "hello-staff"
WAF = "hello-geo"
RULE = {"hostname": HOST, "service": "http://127.0.0.1:8080"}
OTHER_RULE = {"hostname": OTHER_HOST, "service": "http://127.0.0.1:8081"}
EXPRESSION = f'(http.host eq "{HOST}" and not ip.src.country in {{"NL" "BE"}})'
GROUP = {"provider": "okta", "idp": "3f2a9c1e-okta", "name": "Engineering"}


@pytest.fixture(scope="module")
def master_opts(tmp_path_factory, cloudflare_standin, prism, prism_port, vault_server):
    import salt.config

    root = tmp_path_factory.mktemp("cf-master")
    opts = salt.config.minion_config(None)
    opts.update(
        {
            "id": "master-functional",
            "file_client": "local",
            "root_dir": str(root),
            "cachedir": str(root / "cache"),
            "pki_dir": str(root / "pki"),
            "sock_dir": str(root / "sock"),
            "extension_modules": str(root / "extmods"),
            "module_dirs": [str(REPO / "_modules")],
            "states_dirs": [str(REPO / "_states")],
            "utils_dirs": [str(REPO / "_utils")],
            "outpost": {
                "cloudflare": cloudflare_settings(cloudflare_standin, prism_port),
                "vault": vault_server.opts(),
            },
        }
    )
    return opts


@pytest.fixture(scope="module")
def loaders(master_opts):
    return Loaders(master_opts)


@pytest.fixture
def cf(cloudflare_api, loaders, master_opts):
    """The emptied stand-in, with no tunnel token left from an earlier test."""
    import outpost_cloudflare

    tokens = outpost_cloudflare.TunnelTokens(master_opts)
    tokens.delete(CLIENT)
    yield cloudflare_api
    loaders.reset_state()


def states(loaders):
    return loaders.states.cloudflare_zt


def expose(loaders, test=False, rules=(RULE,), emails=("ops@outpost.test",)):
    """Every state exposing hello, in the order salt/orch/expose.sls runs them."""
    zt = states(loaders)
    return [
        zt.tunnel_present(name=TUNNEL, client=CLIENT, test=test),
        zt.ingress_managed(name="hello-ingress", tunnel=TUNNEL, rules=list(rules), test=test),
        zt.cname_present(name=HOST, zone=ZONE, tunnel=TUNNEL, test=test),
        zt.access_policy_present(
            name=POLICY, emails=list(emails), groups=[GROUP], require_mfa=True, test=test
        ),
        zt.access_app_present(name=HOST, policies=[POLICY], test=test),
        zt.waf_rule_present(name=WAF, zone=ZONE, expression=EXPRESSION, test=test),
    ]


def unexpose(loaders, test=False):
    zt = states(loaders)
    return [
        zt.waf_rule_absent(name=WAF, zone=ZONE, test=test),
        zt.access_app_absent(name=HOST, test=test),
        zt.access_policy_absent(name=POLICY, test=test),
        zt.cname_absent(name=HOST, zone=ZONE, tunnel=TUNNEL, test=test),
        zt.ingress_absent(name="hello-ingress", tunnel=TUNNEL, hostnames=[HOST], test=test),
        zt.tunnel_absent(name=TUNNEL, client=CLIENT, test=test),
    ]


def assert_all(results, result, changed):
    for ret in results:
        assert ret.result is result, ret.full_return
        assert bool(ret.changes) is changed, ret.full_return


def the_tunnel(api):
    live = [t for t in api.tunnels.values() if not t["deleted_at"]]
    assert len(live) == 1
    return live[0]


def ingress(api, tunnel_id):
    return api.configs[tunnel_id]["config"]["ingress"]


def cnames(api, name=HOST):
    return [r for r in api.records.values() if r["name"] == name]


def writes(api):
    return [r for r in api.requests if r["method"] != "GET"]


# -- from nothing, and again -----------------------------------------------------------------


def test_expose_from_nothing_then_nothing_changes(cf, loaders, vault_server):
    predicted = expose(loaders, test=True)
    assert_all(predicted, None, True)
    assert writes(cf) == []
    assert cf.tunnels == {}
    assert predicted[0].changes == {
        "tunnel": {"old": None, "new": TUNNEL},
        "token": {"old": None, "new": f"stored for {CLIENT}"},
    }
    catch_all = {"hostname": "*", "service": "http_status:404"}
    assert predicted[1].changes == {
        HOST: {"old": None, "new": RULE},
        "catch-all": {"old": None, "new": catch_all},
    }
    assert predicted[2].changes["record"]["new"] == {
        "name": HOST,
        "type": "CNAME",
        "content": f"<id of tunnel {TUNNEL}>.cfargotunnel.com",
        "proxied": True,
    }

    applied = expose(loaders)
    assert_all(applied, True, True)
    assert applied[0].changes == predicted[0].changes
    assert applied[1].changes == predicted[1].changes
    tunnel = the_tunnel(cf)
    assert tunnel["config_src"] == "cloudflare"
    assert ingress(cf, tunnel["id"]) == [RULE, {"hostname": "*", "service": "http_status:404"}]
    (record,) = cnames(cf)
    assert record["content"] == f"{tunnel['id']}.cfargotunnel.com"
    assert record["proxied"] is True
    (policy,) = cf.policies.values()
    assert policy["decision"] == "allow"
    assert {"email": {"email": "ops@outpost.test"}} in policy["include"]
    assert {"okta": {"name": "Engineering", "identity_provider_id": "3f2a9c1e-okta"}} in policy[
        "include"
    ]
    assert policy["require"] == [{"auth_method": {"auth_method": "mfa"}}]
    (app,) = cf.apps.values()
    assert (app["domain"], app["type"]) == (HOST, "self_hosted")
    assert app["policies"] == [{"id": policy["id"], "precedence": 1}]
    (rule,) = cf.entrypoint("http_request_firewall_custom")["rules"]
    assert (rule["ref"], rule["expression"], rule["action"]) == (WAF, EXPRESSION, "block")

    stored = vault_server.get("secret", f"outpost/cloudflared/{CLIENT}")
    assert stored["tunnel_id"] == tunnel["id"]
    assert json.loads(base64.b64decode(stored["token"]))["t"] == tunnel["id"]

    before = len(writes(cf))
    assert_all(expose(loaders), True, False)
    assert_all(expose(loaders, test=True), True, False)
    assert len(writes(cf)) == before


def test_test_mode_on_a_changed_policy_shows_the_exact_diff(cf, loaders):
    expose(loaders)
    before = len(writes(cf))

    ret = states(loaders).access_policy_present(
        name=POLICY, emails=["ops@outpost.test", "cto@outpost.test"], groups=[GROUP], test=True
    )

    assert ret.result is None
    assert ret.comment == f"would write Access policy {POLICY}"
    okta = {"okta": {"name": "Engineering", "identity_provider_id": "3f2a9c1e-okta"}}
    assert ret.changes == {
        "include": {
            "old": [{"email": {"email": "ops@outpost.test"}}, okta],
            "new": [
                {"email": {"email": "ops@outpost.test"}},
                {"email": {"email": "cto@outpost.test"}},
                okta,
            ],
        }
    }
    assert len(writes(cf)) == before


# -- DNS -------------------------------------------------------------------------------------


def test_dns_target_on_page_three_of_250_is_updated_in_place(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    for index in range(249):
        cf.add_record(f"filler-{index:03}.{ZONE}", "CNAME", f"origin-{index}.example.net")
    stale = cf.add_record(HOST, "CNAME", "old-origin.example.net", proxied=False)
    assert len(cf.records) == 250

    predicted = zt.cname_present(name=HOST, zone=ZONE, tunnel=TUNNEL, test=True)
    tunnel = the_tunnel(cf)
    target = f"{tunnel['id']}.cfargotunnel.com"
    assert predicted.result is None
    assert predicted.changes == {
        "content": {"old": "old-origin.example.net", "new": target},
        "proxied": {"old": False, "new": True},
    }
    pages = [r["query"]["page"] for r in cf.calls("GET", f"/zones/{cf.zone_id}/dns_records")]
    assert pages == ["1", "2", "3"]

    ret = zt.cname_present(name=HOST, zone=ZONE, tunnel=TUNNEL)

    assert ret.result is True, ret.full_return
    assert ret.changes == predicted.changes
    assert len(cf.records) == 250
    assert cf.calls("POST", f"/zones/{cf.zone_id}/dns_records") == []
    assert cf.records[stale["id"]]["content"] == target
    assert cf.records[stale["id"]]["proxied"] is True


def test_a_listing_that_repeats_its_page_stops_and_creates_nothing(cf, loaders):
    """An endpoint answering page 1 for every page must neither loop nor lead to a duplicate."""
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    for index in range(120):
        cf.add_record(f"filler-{index:03}.{ZONE}", "CNAME", f"origin-{index}.example.net")
    cf.repeat_pages = True

    ret = zt.cname_present(name=HOST, zone=ZONE, tunnel=TUNNEL)

    assert ret.result is False
    assert "page 2 repeats items already read" in ret.comment
    assert cf.calls("POST", f"/zones/{cf.zone_id}/dns_records") == []


def test_a_cname_created_meanwhile_is_updated_not_duplicated(cf, loaders):
    """Cloudflare's 81053 ("already exists") on create leads to a re-read and an update."""
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)

    def quicker(api, method, path, body):
        if method == "POST" and path.endswith("/dns_records"):
            api.before_request = None
            api.add_record(HOST, "CNAME", "someone-else.example.net")

    cf.before_request = quicker
    ret = zt.cname_present(name=HOST, zone=ZONE, tunnel=TUNNEL)

    assert ret.result is True, ret.full_return
    (record,) = cnames(cf)
    assert record["content"] == f"{the_tunnel(cf)['id']}.cfargotunnel.com"


def test_an_a_record_at_the_name_is_not_replaced(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    cf.add_record(HOST, "A", "192.0.2.10")

    ret = zt.cname_present(name=HOST, zone=ZONE, tunnel=TUNNEL)

    assert ret.result is False
    assert "another record (A or AAAA) has that name" in ret.comment
    assert [r["type"] for r in cnames(cf)] == ["A"]


# -- ingress ---------------------------------------------------------------------------------


def test_two_apps_on_one_tunnel_keep_both_rules(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    first = zt.ingress_managed(name="hello-ingress", tunnel=TUNNEL, rules=[RULE])
    predicted = zt.ingress_managed(
        name="shop-ingress", tunnel=TUNNEL, rules=[OTHER_RULE], test=True
    )
    second = zt.ingress_managed(name="shop-ingress", tunnel=TUNNEL, rules=[OTHER_RULE])

    assert first.result is second.result is True
    assert predicted.result is None
    assert predicted.changes == {OTHER_HOST: {"old": None, "new": OTHER_RULE}}
    assert second.changes == predicted.changes
    catch_all = {"hostname": "*", "service": "http_status:404"}
    assert ingress(cf, the_tunnel(cf)["id"]) == [RULE, OTHER_RULE, catch_all]
    again = zt.ingress_managed(name="hello-ingress", tunnel=TUNNEL, rules=[RULE])
    assert (again.result, again.changes) == (True, {})


def test_a_concurrent_ingress_change_is_merged_not_lost(cf, loaders):
    """Someone writes the configuration between outpost's read and its write: the version
    outpost read no longer matches, so it merges with theirs instead of overwriting it."""
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    tunnel_id = the_tunnel(cf)["id"]
    zt.ingress_managed(name="hello-ingress", tunnel=TUNNEL, rules=[RULE])
    theirs = {"hostname": f"admin.{ZONE}", "service": "http://127.0.0.1:9000"}

    def someone_else(api, tunnel):
        config = api.configs[tunnel]["config"]
        api.put_config(tunnel, {"ingress": [theirs, *config["ingress"]]})

    cf.on_config_read = someone_else
    ret = zt.ingress_managed(name="shop-ingress", tunnel=TUNNEL, rules=[OTHER_RULE])

    assert ret.result is True, ret.full_return
    hosts = [rule["hostname"] for rule in ingress(cf, tunnel_id)]
    assert hosts == [f"admin.{ZONE}", HOST, OTHER_HOST, "*"]


def test_bad_ingress_rules_name_the_rule(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)

    ret = zt.ingress_managed(
        name="bad", tunnel=TUNNEL, rules=[{"hostname": HOST, "service": "http://localhost:80"}]
    )

    assert ret.result is False
    assert "ingress[0]: service 'http://localhost:80'" in ret.comment
    assert cf.calls("PUT") == []


# -- drift -----------------------------------------------------------------------------------


def test_manual_edits_to_dns_and_policy_are_reverted_and_reported(cf, loaders):
    expose(loaders)
    (record,) = cnames(cf)
    target = record["content"]
    record.update(content="attacker.example.net", proxied=False)
    (policy,) = cf.policies.values()
    policy["include"].append({"everyone": {}})
    policy["require"] = []

    predicted = expose(loaders, test=True)
    assert [bool(r.changes) for r in predicted] == [False, False, True, True, False, False]
    results = expose(loaders)

    dns, access = results[2], results[3]
    assert dns.changes == {
        "content": {"old": "attacker.example.net", "new": target},
        "proxied": {"old": False, "new": True},
    }
    assert set(access.changes) == {"include", "require"}
    assert access.changes["require"] == {
        "old": [],
        "new": [{"auth_method": {"auth_method": "mfa"}}],
    }
    assert cnames(cf)[0]["content"] == target
    assert {"everyone": {}} not in cf.policies[policy["id"]]["include"]
    assert_all(expose(loaders), True, False)


def test_server_defaults_and_settings_outpost_does_not_own_cause_no_diff(cf, loaders):
    expose(loaders)
    (app,) = cf.apps.values()
    app.update(logo_url="https://example.net/logo.png", session_duration="8h")
    (record,) = cnames(cf)
    record.update(ttl=300, comment="set by hand")

    assert_all(expose(loaders, test=True), True, False)


# -- removal ---------------------------------------------------------------------------------


def test_remove_takes_everything_away_and_nothing_else(cf, loaders, vault_server):
    zt = states(loaders)
    unrelated = cf.add_record(f"www.{ZONE}", "CNAME", "origin.example.net")
    expose(loaders)
    zt.ingress_managed(name="shop-ingress", tunnel=TUNNEL, rules=[OTHER_RULE])
    zt.waf_rule_present(
        name="keep-me", zone=ZONE, expression=f'(http.host eq "www.{ZONE}")', action="log"
    )
    zt.access_policy_present(name="shop-staff", emails=["shop@outpost.test"])

    predicted = unexpose(loaders, test=True)
    assert_all(predicted, None, True)
    assert len(cf.apps) == 1
    assert len(cnames(cf)) == 1

    assert_all(unexpose(loaders), True, True)

    assert cf.apps == {}
    assert [p["name"] for p in cf.policies.values()] == ["shop-staff"]
    assert cnames(cf) == []
    assert cf.records[unrelated["id"]]["content"] == "origin.example.net"
    assert [r["ref"] for r in cf.entrypoint("http_request_firewall_custom")["rules"]] == ["keep-me"]
    assert [t for t in cf.tunnels.values() if not t["deleted_at"]] == []
    assert vault_server.get("secret", f"outpost/cloudflared/{CLIENT}") is None
    assert_all(unexpose(loaders), True, False)
    assert_all(unexpose(loaders, test=True), True, False)


def test_ingress_absent_keeps_other_apps_rules(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    zt.ingress_managed(name="hello-ingress", tunnel=TUNNEL, rules=[RULE])
    zt.ingress_managed(name="shop-ingress", tunnel=TUNNEL, rules=[OTHER_RULE])

    predicted = zt.ingress_absent(name="hello-ingress", tunnel=TUNNEL, hostnames=[HOST], test=True)
    ret = zt.ingress_absent(name="hello-ingress", tunnel=TUNNEL, hostnames=[HOST])

    assert predicted.result is None
    assert predicted.changes == {HOST: {"old": RULE, "new": None}}
    assert (ret.result, ret.changes) == (True, predicted.changes)
    assert [r["hostname"] for r in ingress(cf, the_tunnel(cf)["id"])] == [OTHER_HOST, "*"]


def test_a_cname_pointing_elsewhere_is_left_alone(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL)
    cf.add_record(HOST, "CNAME", "someone-elses.example.net")

    for test in (True, False):
        ret = zt.cname_absent(name=HOST, zone=ZONE, tunnel=TUNNEL, test=test)
        assert (ret.result, ret.changes) == (True, {})
        assert "left alone" in ret.comment
    assert len(cnames(cf)) == 1


def test_a_tunnel_with_a_live_connector_is_removed(cf, loaders):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL, client=CLIENT)
    cf.connect(the_tunnel(cf)["id"])

    ret = zt.tunnel_absent(name=TUNNEL, client=CLIENT)

    assert ret.result is True, ret.full_return
    assert [t for t in cf.tunnels.values() if not t["deleted_at"]] == []


# -- errors and secrets ----------------------------------------------------------------------


def test_an_unknown_zone_is_named(cf, loaders):
    ret = states(loaders).waf_rule_present(name=WAF, zone="nope.test", expression=EXPRESSION)

    assert ret.result is False
    assert "zone: 'nope.test' is neither a zone id nor named in outpost:cloudflare:zones" in (
        ret.comment
    )


def test_a_rejected_token_is_reported_without_the_token(cf, loaders, master_opts, monkeypatch):
    settings = dict(master_opts["outpost"]["cloudflare"], api_token="not-the-token")
    monkeypatch.setitem(master_opts["outpost"], "cloudflare", settings)

    ret = states(loaders).tunnel_present(name=TUNNEL)

    assert ret.result is False
    assert "HTTP 403: 10000: Authentication error" in ret.comment
    assert "not-the-token" not in json.dumps(ret.full_return)


def test_the_api_token_can_come_from_vault(cf, loaders, master_opts, vault_server, monkeypatch):
    vault_server.put("secret", "outpost/cloudflare", {"api_token": API_TOKEN})
    reference = {"vault": {"mount": "secret", "path": "outpost/cloudflare", "key": "api_token"}}
    settings = dict(master_opts["outpost"]["cloudflare"], api_token=reference)
    monkeypatch.setitem(master_opts["outpost"], "cloudflare", settings)

    assert loaders.modules.cloudflare_zt.verify_token() == {
        "status": "active",
        "id": "ed17574386854bf78a67040be0a770b0",
    }


def test_no_secret_in_logs_or_returns(cf, loaders, caplog):
    caplog.set_level(logging.DEBUG)

    results = expose(loaders) + expose(loaders, test=True) + unexpose(loaders)

    token = cf.secrets and next(iter(cf.secrets.values()))
    text = json.dumps([r.full_return for r in results])
    for secret in filter(None, [API_TOKEN, token]):
        assert secret not in text
        assert secret not in caplog.text
    assert "stored for client-1" in text


def test_a_stale_stored_tunnel_token_is_replaced_and_never_shown(cf, loaders, vault_server):
    zt = states(loaders)
    zt.tunnel_present(name=TUNNEL, client=CLIENT)
    path = f"outpost/cloudflared/{CLIENT}"
    real = vault_server.get("secret", path)["token"]
    vault_server.put("secret", path, {"token": "stale-token-value", "tunnel_id": "old"})

    predicted = zt.tunnel_present(name=TUNNEL, client=CLIENT, test=True)
    ret = zt.tunnel_present(name=TUNNEL, client=CLIENT)

    change = {"token": {"old": "a different token", "new": f"stored for {CLIENT}"}}
    assert (predicted.result, predicted.changes) == (None, change)
    assert (ret.result, ret.changes) == (True, change)
    assert vault_server.get("secret", path)["token"] == real
    assert real not in json.dumps([predicted.full_return, ret.full_return])
