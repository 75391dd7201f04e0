"""A plain highstate installs and keeps every app the client's pillar names, and the tunnel
connector in front of them."""

import uuid

import pytest
import yaml

from demo.supervisor import Supervisord
from tests.conftest import client_overrides, free_port, sync_client
from tests.support.cloudflared import VERSIONS, make_token, publish_standin
from tests.support.states import healthz

pytestmark = pytest.mark.slow


CLIENT = "client-f"


@pytest.fixture(scope="module")
def formula_client(salt_master, short_root):
    """A client no rollout or exposure names, so its highstate is this pillar's alone."""
    supervisor = Supervisord(short_root / "sv-f").start()
    factory = salt_master.salt_minion_daemon(
        CLIENT, overrides=client_overrides(short_root / "outpost-f", supervisor)
    )
    try:
        with factory.started():
            sync_client(factory)
            yield factory
    finally:
        supervisor.stop()


def highstate(salt_call, test=False):
    ret = salt_call.run("state.highstate", *(["test=True"] if test else []))
    assert isinstance(ret.data, dict), ret
    return ret.data


def beacon_settings(items):
    """A beacon's settings as Salt keeps them, a list of one-key mappings, as one mapping."""
    merged = {}
    for item in items:
        merged.update(item)
    return merged


def changed(results):
    return {key: value["changes"] for key, value in results.items() if value["changes"]}


def test_highstate_converges_the_pillar_apps(
    formula_client, pillar_tree, hello_releases, app_settings, ext_tree, short_root
):
    salt_call = formula_client.salt_call_cli(timeout=120)
    release = hello_releases["1.1.0"]
    connector = publish_standin(ext_tree, "cloudflared-f", free_port(), short_root / "none.json")
    connector = connector[VERSIONS[0]]
    pillar = {
        "outpost": {
            "root": str(short_root / "outpost-f"),
            "apps": {
                "formula": {
                    "version": "1.1.0",
                    "source_hash": f"sha256={release['sha256']}",
                    "python": app_settings["python"],
                    "port": app_settings["port"],
                    "env": {"GREETING": "hello from pillar"},
                }
            },
            "beacons": {"app_health": {"interval": 7, "failures": 2, "heartbeat": 120}},
            "cloudflared": {
                "version": connector["version"],
                "source": connector["source"],
                "source_hash": connector["source_hash"],
                "metrics": f"127.0.0.1:{free_port()}",
                "tunnel": str(uuid.uuid4()),
                "ingress": [
                    {"hostname": "f.outpost.test", "app": "formula"},
                    {"service": "http_status:404"},
                ],
            },
        }
    }
    pillar["outpost"]["cloudflared"]["token"] = make_token(
        pillar["outpost"]["cloudflared"]["tunnel"]
    )
    pillar["outpost"]["apps"]["formula"]["source"] = release["source"]
    top_before = (pillar_tree / "top.sls").read_text()
    (pillar_tree / "outpost.sls").write_text(yaml.safe_dump(pillar))
    (pillar_tree / "top.sls").write_text(yaml.safe_dump({"base": {CLIENT: ["outpost"]}}))
    salt_call.run("saltutil.refresh_pillar", "wait=True")

    try:
        predicted = highstate(salt_call, test=True)
        assert sorted(id.split("_|-")[1] for id in changed(predicted)) == [
            "outpost-apps-formula-installed",
            "outpost-cloudflared-configured",
            "outpost-cloudflared-installed",
            "outpost-cloudflared-running",
        ]
        assert {predicted[id]["result"] for id in changed(predicted)} == {None}

        applied = highstate(salt_call)
        assert all(result["result"] for result in applied.values()), applied
        assert healthz(app_settings["port"])["version"] == "1.1.0"
        assert salt_call.run("cloudflared.check_ready").data["healthy"] is True
        beacons = salt_call.run("beacons.list", "return_yaml=False").data
        assert beacon_settings(beacons["app_health"]) == {
            "interval": 7,
            "failures": 2,
            "heartbeat": 120,
        }
        assert beacon_settings(beacons["tunnel_health"]) == {"interval": 10, "failures": 3}

        assert changed(highstate(salt_call)) == {}
    finally:
        # The formula turned the health beacon on; other tests stop apps on purpose.
        for beacon in ("app_health", "tunnel_health"):
            salt_call.run("beacons.delete", beacon, "save=True")
        salt_call.run("cloudflared.remove_service")
        (pillar_tree / "top.sls").write_text(top_before)
        salt_call.run("saltutil.refresh_pillar", "wait=True")
