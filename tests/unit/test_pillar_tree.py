"""
The example pillar tree under ``pillar/``, compiled by Salt's own pillar compiler, gives the
formula what it needs once the registry adds a release.
"""

import salt.config
import salt.pillar
import salt.utils.dictupdate

from tests.conftest import REPO
from tests.unit.test_sls_rendering import arguments, render

PILLAR_TREE = REPO / "pillar"


def compile_pillar(tmp_path, minion_id, os_family="Windows"):
    opts = salt.config.minion_config(None)
    opts.update(
        id=minion_id,
        file_client="local",
        pillar_roots={"base": [str(PILLAR_TREE)]},
        file_roots={"base": [str(REPO / "salt")]},
        cachedir=str(tmp_path / "cache"),
        ext_pillar=[],
    )
    grains = {"id": minion_id, "os_family": os_family}
    pillar = salt.pillar.Pillar(opts, grains, minion_id, "base").compile_pillar()
    assert "_errors" not in pillar, pillar.get("_errors")
    return pillar


def test_a_client_gets_the_app_settings_but_no_release(tmp_path):
    pillar = compile_pillar(tmp_path, "client-1")

    hello = pillar["outpost"]["apps"]["hello"]
    assert hello["port"] == 8080
    assert "version" not in hello
    assert "source_hash" not in hello
    assert pillar["outpost"]["beacons"]["app_health"]["failures"] == 3
    assert "cloudflared" not in pillar["outpost"]


def test_a_host_outside_the_clients_gets_no_app(tmp_path):
    pillar = compile_pillar(tmp_path, "build-1")

    assert "apps" not in pillar["outpost"]
    assert pillar["outpost"]["root"] == "C:\\outpost"


def test_a_linux_client_gets_no_windows_settings(tmp_path):
    """The tree gave every client root C:\\outpost and the Windows Pythons."""
    pillar = compile_pillar(tmp_path, "client-7", os_family="Debian")

    assert "root" not in pillar["outpost"]
    assert "pythons" not in pillar["outpost"]
    assert pillar["outpost"]["apps"]["hello"]["python"] == "/usr/bin/python3.11"


def test_the_formula_installs_the_release_the_registry_adds(tmp_path):
    """The registry's ext_pillar merges version and source_hash into the tree's app settings."""
    registry = {"outpost": {"apps": {"hello": {"version": "1.1.0", "source_hash": "sha256=ab"}}}}
    pillar = salt.utils.dictupdate.merge(compile_pillar(tmp_path, "client-1"), registry)
    opts = salt.config.minion_config(None)
    opts.update(file_client="local", file_roots={"base": [str(REPO / "salt")]})
    opts["cachedir"] = str(tmp_path / "render-cache")

    rendered = render(opts, "outpost/apps/init.sls", pillar)

    state = arguments(rendered["outpost-apps-hello-installed"])
    assert (state["version"], state["port"], state["source_hash"]) == ("1.1.0", 8080, "sha256=ab")
    assert state["source"] == "salt://releases/hello/hello-1.1.0.pyz"
