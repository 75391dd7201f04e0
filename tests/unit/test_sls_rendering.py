"""
The formula's and the orchestrations' SLS rendered by Salt's own Jinja renderer, with the few
execution functions they call stood in: pillar and request values stay values, whatever they hold.
"""

import copy

import pytest
import salt.config
import salt.utils.dictupdate
import salt.utils.templates
import yaml
from salt.exceptions import SaltRenderError, TemplateError

from tests.conftest import REPO

STATE_TREE = REPO / "salt"
# Text that, pasted into YAML unquoted, would add keys, lists or comments of its own.
HOSTILE = "a: b\n- injected: true # '\"{}"


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    opts = salt.config.minion_config(None)
    opts.update(
        file_client="local",
        file_roots={"base": [str(STATE_TREE)]},
        cachedir=str(tmp_path_factory.mktemp("cache")),
    )
    return opts


def render(opts, sls, pillar, functions=None, os_family="Debian"):
    pillar_functions = {
        "pillar.get": lambda key, default=None: copy.deepcopy(pillar.get(key, default)),
        "grains.filter_by": lambda lookup, grain: lookup.get(os_family),
        "slsutil.merge": lambda a, b: salt.utils.dictupdate.merge(copy.deepcopy(a), b),
    }
    result = salt.utils.templates.JINJA(
        str(STATE_TREE / sls),
        to_str=True,
        pillar=pillar,
        salt=dict(pillar_functions, **(functions or {})),
        opts=opts,
        grains={"os_family": os_family, "os": os_family},
        saltenv="base",
        sls=sls,
    )
    if not result["result"]:
        raise TemplateError(result["data"])
    return yaml.safe_load(result["data"])


def arguments(state):
    [(_, arguments)] = state.items()
    return {key: value for item in arguments for key, value in item.items()}


def test_app_settings_stay_single_values(opts):
    """source_hash, user and health_url went into the SLS unquoted, where YAML read them."""
    settings = {
        "version": "1.0.0",
        "port": 8080,
        "python": "/usr/bin/python3",
        "source_hash": HOSTILE,
        "user": HOSTILE,
        "health_url": HOSTILE,
        "source": HOSTILE,
    }

    rendered = render(opts, "outpost/apps/init.sls", {"outpost": {"apps": {"hello": settings}}})

    state = arguments(rendered["outpost-apps-hello-installed"])
    assert [state[key] for key in ("source_hash", "user", "health_url", "source")] == [HOSTILE] * 4
    assert state["port"] == 8080


def test_the_default_source_is_where_publish_puts_the_zipapp(opts):
    settings = {"version": "1.1.0", "port": 8080, "python": "/usr/bin/python3", "source_hash": "x"}

    rendered = render(opts, "outpost/apps/init.sls", {"outpost": {"apps": {"hello": settings}}})

    assert arguments(rendered["outpost-apps-hello-installed"])["source"] == (
        "salt://releases/hello/hello-1.1.0.pyz"
    )


def test_an_app_the_registry_names_without_pillar_settings_fails_naming_them(opts):
    """A release from the registry for an app the pillar tree had no settings for stopped the
    whole highstate with a Jinja error about a missing attribute."""
    settings = {"version": "1.1.0", "source_hash": "x"}

    rendered = render(opts, "outpost/apps/init.sls", {"outpost": {"apps": {"hello": settings}}})

    [(function, state)] = rendered["outpost-apps-hello-installed"].items()
    assert function == "test.configurable_test_state"
    assert arguments(rendered["outpost-apps-hello-installed"])["result"] is False
    assert arguments(rendered["outpost-apps-hello-installed"])["comment"] == (
        "outpost:apps:hello: no python, port in pillar; nothing was changed"
    )


def test_cloudflared_settings_stay_single_values(opts):
    cloudflared = {"version": "2025.1.0", "source_hash": HOSTILE, "tunnel": HOSTILE}

    rendered = render(
        opts, "outpost/cloudflared/init.sls", {"outpost": {"cloudflared": cloudflared}}
    )

    assert arguments(rendered["outpost-cloudflared-installed"])["source_hash"] == HOSTILE
    assert arguments(rendered["outpost-cloudflared-configured"])["tunnel"] == HOSTILE


NO_TUNNEL = {
    "cloudflare_zt.get_tunnel": lambda tunnel: None,
    "cloudflare_zt.get_ingress": lambda tunnel: {"ingress": []},
}


@pytest.mark.parametrize("sls", ["orch/expose.sls", "orch/unexpose.sls"])
@pytest.mark.parametrize("client", ["*", "client-*", "client-1\n", "a,b", "", 7])
def test_an_orchestration_refuses_a_client_that_is_no_minion_id(opts, sls, client):
    """unexpose with client '*' ran cloudflared.remove_service on every minion."""
    expose = {"client": client, "hostname": "hello.example.com", "zone": "example.com", "port": 1}

    with pytest.raises(
        (TemplateError, SaltRenderError), match="expose:client: .* is not a minion id"
    ):
        render(opts, sls, {"expose": expose}, NO_TUNNEL)


@pytest.mark.parametrize(
    ("sls", "prefix"),
    [("orch/expose.sls", "outpost-orch-expose"), ("orch/unexpose.sls", "outpost-orch-unexpose")],
)
def test_an_orchestration_targets_its_client_as_a_list(opts, sls, prefix):
    expose = {"client": "client-1", "hostname": HOSTILE, "zone": HOSTILE, "port": 8080}

    rendered = render(opts, sls, {"expose": expose}, NO_TUNNEL)

    target = arguments(rendered[f"{prefix}-cloudflared"])
    dns = arguments(rendered[f"{prefix}-dns"])
    assert (target["tgt"], target["tgt_type"]) == (["client-1"], "list")
    assert (dns["name"], dns["zone"]) == (HOSTILE, HOSTILE)


def test_a_rollout_targets_each_batch_as_a_list(opts):
    plan = {"app": "hello", "version": "1.2.0", "batches": [["c-1"], ["c-2", "c-3"]]}
    plan.update(max_failures=0, state_timeout=600)
    plan.update(soak=5, offline=[])
    runner = {"saltutil.runner": lambda name, rollout_id: plan}

    rendered = render(opts, "orch/rollout.sls", {"outpost_rollout": {"id": 7}}, runner)

    apply = arguments(rendered["outpost-orch-rollout-batch-1-apply"])
    gate = arguments(rendered["outpost-orch-rollout-batch-1-gate"])
    assert (apply["tgt"], apply["tgt_type"], apply["timeout"]) == (["c-2", "c-3"], "list", 600)
    assert apply["pillar"] == {"outpost_rollout": {"app": "hello", "version": "1.2.0"}}
    assert (gate["soak"], gate["max_failures"], gate["state_gated"]) == (5, 0, True)


@pytest.mark.parametrize(
    ("version", "expected", "fails"),
    [("1.1.0", "1.2.0", True), ("1.2.0", "1.2.0", False), ("1.2.0", None, True)],
)
def test_a_rollouts_state_run_fails_unless_the_pillar_names_its_release(
    opts, version, expected, fails
):
    """A client whose pillar did not name the release passed the rollout's state run with nothing
    done, and with no soak the gate took that pass as healthy."""
    settings = {"version": version, "port": 8080, "python": "/usr/bin/python3", "source_hash": "x"}
    pillar = {
        "outpost": {"apps": {"hello": settings}},
        "outpost_rollout": {"app": "hello", "version": expected},
    }

    rendered = render(opts, "outpost/apps/init.sls", pillar)

    assert ("outpost-apps-hello-rollout" in rendered) is fails
    if fails:
        failing = arguments(rendered["outpost-apps-hello-rollout"])
        assert (failing["result"], failing["allow_test_mode_failure"]) == (False, True)
        assert failing["comment"] == (
            f"outpost:apps:hello: the pillar does not name {expected}, the release being rolled "
            "out; nothing was changed"
        )
    # A client left behind keeps what it runs: no install of the release its pillar names.
    assert ("outpost-apps-hello-installed" in rendered) is not fails


def test_beacon_settings_stay_single_values(opts):
    """failures: "3\n    - enabled: false" added a beacon item of its own."""
    hostile = {"interval": HOSTILE, "failures": HOSTILE, "heartbeat": HOSTILE}
    pillar = {"outpost": {"beacons": {"app_health": hostile, "tunnel_health": hostile}}}

    rendered = render(opts, "outpost/beacons/init.sls", pillar)

    for state in ("outpost-beacons-app-health-present", "outpost-beacons-tunnel-health-present"):
        settings = arguments(rendered[state])
        assert settings["failures"] == HOSTILE
        assert "enabled" not in settings


def test_windows_downloads_stay_single_values(opts):
    pillar = {
        "outpost": {
            "root": "C:\\outpost",
            "pythons": {"3.11.9": {"source": HOSTILE, "source_hash": HOSTILE}},
            "winsw": {"source": HOSTILE, "source_hash": HOSTILE},
        }
    }

    python = render(opts, "outpost/python/init.sls", pillar, os_family="Windows")
    winsw = render(opts, "outpost/winsw/init.sls", pillar, os_family="Windows")

    extracted = arguments(python["outpost-python-3.11.9-extracted"])
    assert extracted["name"] == "C:\\outpost\\python\\3.11.9"
    assert extracted["if_missing"] == "C:\\outpost\\python\\3.11.9\\python.exe"
    assert (extracted["source"], extracted["source_hash"]) == (HOSTILE, HOSTILE)
    managed = arguments(winsw["outpost-winsw-managed"])
    assert managed["name"] == "C:\\outpost\\bin\\winsw.exe"
    assert (managed["source"], managed["source_hash"]) == (HOSTILE, HOSTILE)
