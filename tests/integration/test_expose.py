"""
orch.expose and orch.unexpose through the real master (``salt-run state.orchestrate``): the
Cloudflare states run on the master against the API stand-in behind Prism, then the client's
cloudflared (the connector stand-in, under the real supervisord) starts on the tunnel token the
master stored for it and delivered through its pillar.
"""

import hashlib
import json
import pathlib
import sys

import pytest
import yaml

from tests.conftest import REPO, free_port
from tests.support.fixtures_cloudflare import API_TOKEN, ZONE

pytestmark = pytest.mark.slow

STANDIN = REPO / "tests" / "standins" / "cloudflared.py"
VERSION = "2025.8.1"
HOST = f"hello.{ZONE}"
TUNNEL = "outpost-client-1"


@pytest.fixture(scope="module")
def connector_release(ext_tree, short_root):
    """A cloudflared "release" on the master's fileserver: a wrapper running the stand-in."""
    folder = ext_tree / "artifacts" / "cloudflared"
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / f"cloudflared-expose-{VERSION}"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import os, runpy\n"
        f"os.environ['OUTPOST_STANDIN_VERSION'] = {VERSION!r}\n"
        f"os.environ['OUTPOST_STANDIN_EDGE'] = '127.0.0.1:{free_port()}'\n"
        f"runpy.run_path({str(STANDIN)!r}, run_name='__main__')\n"
    )
    return {
        "version": VERSION,
        "source": f"salt://artifacts/cloudflared/{wrapper.name}",
        "source_hash": "sha256=" + hashlib.sha256(wrapper.read_bytes()).hexdigest(),
        "metrics": f"127.0.0.1:{free_port()}",
    }


@pytest.fixture(scope="module")
def client_pillar(pillar_tree, salt_minion, connector_release):
    """The client's cloudflared settings, as an operator writes them (no token: the master's
    outpost_cloudflare ext_pillar adds it)."""
    top = pillar_tree / "top.sls"
    top_before = top.read_text()
    sls = pillar_tree / "outpost_expose.sls"
    sls.write_text(yaml.safe_dump({"outpost": {"cloudflared": connector_release}}))
    top.write_text(yaml.safe_dump({"base": {salt_minion.id: ["outpost_expose"]}}))
    yield
    top.write_text(top_before)
    sls.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def expose_pillar(salt_minion):
    return {
        "expose": {
            "client": salt_minion.id,
            "hostname": HOST,
            "zone": ZONE,
            "port": 8080,
            "access": {"emails": ["ops@outpost.test"], "require_mfa": True},
            "waf": {"expression": f'(http.host eq "{HOST}" and ip.src.country eq "T1")'},
        }
    }


def orchestrate(salt_master, sls, pillar, test=False):
    args = ["state.orchestrate", sls, f"pillar={json.dumps(pillar)}"]
    if test:
        args.append("test=True")
    ret = salt_master.salt_run_cli(timeout=300).run(*args)
    assert isinstance(ret.data, dict), ret
    (states,) = ret.data["data"].values()
    return ret, states


def by_id(states):
    return {ret["__id__"]: ret for ret in states.values()}


def test_expose_then_unexpose_one_client(
    salt_master,
    salt_minion,
    salt_call,
    client_pillar,
    expose_pillar,
    cloudflare_api,
    prism,
    vault_server,
):
    verified = salt_master.salt_run_cli(timeout=120).run("salt.cmd", "cloudflare_zt.verify_token")
    assert verified.data == {"status": "active", "id": "ed17574386854bf78a67040be0a770b0"}

    predicted_run, predicted = orchestrate(salt_master, "orch.expose", expose_pillar, test=True)
    assert {ret["result"] for ret in predicted.values()} <= {None, True}, predicted
    assert cloudflare_api.tunnels == {}

    exposed_run, exposed = orchestrate(salt_master, "orch.expose", expose_pillar)
    assert all(ret["result"] is True for ret in exposed.values()), exposed
    assert all(ret["changes"] for ret in exposed.values()), exposed
    (tunnel,) = cloudflare_api.tunnels.values()
    (record,) = [r for r in cloudflare_api.records.values() if r["name"] == HOST]
    assert record["content"] == f"{tunnel['id']}.cfargotunnel.com"
    assert [a["domain"] for a in cloudflare_api.apps.values()] == [HOST]
    stored = vault_server.get("secret", f"outpost/cloudflared/{salt_minion.id}")
    assert stored["tunnel_id"] == tunnel["id"]
    status = salt_call.run("cloudflared.get_status").data
    assert (status["healthy"], status["tunnel"]) == (True, "remotely managed"), status

    again_run, again = orchestrate(salt_master, "orch.expose", expose_pillar)
    changed = {key: ret["changes"] for key, ret in by_id(again).items() if ret["changes"]}
    assert changed == {}

    removed_run, removed = orchestrate(salt_master, "orch.unexpose", expose_pillar)
    assert all(ret["result"] is True for ret in removed.values()), removed
    assert cloudflare_api.apps == cloudflare_api.policies == {}
    assert [r for r in cloudflare_api.records.values() if r["name"] == HOST] == []
    assert [t for t in cloudflare_api.tunnels.values() if not t["deleted_at"]] == []
    assert salt_call.run("cloudflared.get_status").data["service"] != "running"
    assert vault_server.get("secret", f"outpost/cloudflared/{salt_minion.id}") is None

    secrets = [API_TOKEN, stored["token"], *cloudflare_api.secrets.values()]
    master_log = pathlib.Path(salt_master.config["log_file"])
    texts = [r.stdout + r.stderr for r in (predicted_run, exposed_run, again_run, removed_run)]
    texts.append(master_log.read_text(encoding="utf-8", errors="replace"))
    for secret in secrets:
        assert not [text for text in texts if secret in text]
