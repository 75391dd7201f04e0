"""A plain highstate installs and keeps every app the client's pillar names."""

import pytest
import yaml

from tests.support.states import healthz

pytestmark = pytest.mark.slow


def highstate(salt_call, test=False):
    ret = salt_call.run("state.highstate", *(["test=True"] if test else []))
    assert isinstance(ret.data, dict), ret
    return ret.data


def changed(results):
    return {key: value["changes"] for key, value in results.items() if value["changes"]}


def test_highstate_converges_the_pillar_apps(
    salt_call, pillar_tree, hello_releases, app_settings, outpost_root
):
    release = hello_releases["1.1.0"]
    pillar = {
        "outpost": {
            "root": str(outpost_root),
            "apps": {
                "formula": {
                    "version": "1.1.0",
                    "source_hash": f"sha256={release['sha256']}",
                    "python": app_settings["python"],
                    "port": app_settings["port"],
                    "env": {"GREETING": "hello from pillar"},
                }
            },
        }
    }
    pillar["outpost"]["apps"]["formula"]["source"] = release["source"]
    top_before = (pillar_tree / "top.sls").read_text()
    (pillar_tree / "outpost.sls").write_text(yaml.safe_dump(pillar))
    (pillar_tree / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["outpost"]}}))
    salt_call.run("saltutil.refresh_pillar", "wait=True")

    try:
        predicted = highstate(salt_call, test=True)
        (state_id,) = changed(predicted)
        assert state_id.startswith("shiv_app_|-outpost-apps-formula-installed")
        assert predicted[state_id]["result"] is None

        applied = highstate(salt_call)
        assert all(result["result"] for result in applied.values()), applied
        assert healthz(app_settings["port"])["version"] == "1.1.0"

        assert changed(highstate(salt_call)) == {}
    finally:
        # The formula turned the health beacon on; other tests stop apps on purpose.
        salt_call.run("beacons.delete", "app_health", "save=True")
        (pillar_tree / "top.sls").write_text(top_before)
        salt_call.run("saltutil.refresh_pillar", "wait=True")
