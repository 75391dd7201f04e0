"""A change to a watched state restarts the live release behind a health gate."""

import json

import pytest

from tests.support.states import healthz

pytestmark = pytest.mark.slow

SLS = """
watched-settings:
  file.managed:
    - name: {settings_file}
    - contents: {contents}

watched-app:
  shiv_app.installed:
    - name: watched
    - version: "1.0.0"
    - source: {source}
    - source_hash: {sha256}
    - python: {python}
    - port: {port}
    - watch:
      - file: watched-settings
"""


def apply(salt_call, ext_tree, release, settings, contents, tmp_path, test=False):
    (ext_tree / "watchtest.sls").write_text(
        SLS.format(
            settings_file=tmp_path / "settings.ini",
            contents=json.dumps(contents),
            source=release["source"],
            sha256=release["sha256"],
            python=settings["python"],
            port=settings["port"],
        )
    )
    ret = salt_call.run("state.apply", "watchtest", *(["test=True"] if test else []))
    assert isinstance(ret.data, dict), ret
    return {key.split("_|-")[1]: value for key, value in ret.data.items()}


def test_watch_restarts_with_and_without_test_mode(
    salt_call, ext_tree, hello_releases, app_settings, tmp_path
):
    release = hello_releases["1.0.0"]
    first = apply(salt_call, ext_tree, release, app_settings, "a", tmp_path)
    assert all(result["result"] for result in first.values()), first
    pid = salt_call.run("shiv_app.get_status", "watched").data["pid"]

    predicted = apply(salt_call, ext_tree, release, app_settings, "b", tmp_path, test=True)
    assert predicted["watched-app"]["result"] is None
    assert predicted["watched-app"]["changes"] == {"restarted": "watched"}
    assert salt_call.run("shiv_app.get_status", "watched").data["pid"] == pid

    changed = apply(salt_call, ext_tree, release, app_settings, "b", tmp_path)
    assert changed["watched-app"]["result"] is True, changed
    assert changed["watched-app"]["changes"] == {"restarted": "1.0.0"}
    assert salt_call.run("shiv_app.get_status", "watched").data["pid"] != pid
    assert healthz(app_settings["port"])["version"] == "1.0.0"
