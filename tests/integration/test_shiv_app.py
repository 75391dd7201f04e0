"""
The release lifecycle of one app on a real minion, with real supervisord and real shiv builds.
"""

import json
import os
import pathlib

import pytest

from tests.support.states import healthz, page, single

pytestmark = pytest.mark.slow


def install(salt_call, app, release, settings, test=False, **extra):
    return single(
        salt_call,
        "shiv_app.installed",
        test=test,
        name=app,
        version=release["version"],
        source=release["source"],
        source_hash=release["sha256"],
        **settings,
        **extra,
    )


def journal(outpost_root, app):
    path = pathlib.Path(outpost_root, "apps", app, "journal.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def current(outpost_root, app):
    return pathlib.Path(outpost_root, "apps", app, "current").read_text().strip()


def test_install_upgrade_and_failed_gate_keeps_previous_live(
    salt_call, hello_releases, app_settings, outpost_root
):
    app, port = "lifecycle", app_settings["port"]

    first = install(salt_call, app, hello_releases["1.0.0"], app_settings)
    assert first["result"] is True, first
    assert first["changes"]["installed"] == "1.0.0"
    assert healthz(port)["version"] == "1.0.0"

    second = install(salt_call, app, hello_releases["1.1.0"], app_settings)
    assert second["result"] is True, second
    assert second["changes"]["version"] == {"old": "1.0.0", "new": "1.1.0"}
    assert healthz(port)["version"] == "1.1.0"

    broken = install(salt_call, app, hello_releases["1.2.0"], app_settings)
    assert broken["result"] is False
    assert "failed its health gate" in broken["comment"]
    assert "1.1.0 is live again and healthy" in broken["comment"]
    assert healthz(port)["version"] == "1.1.0"
    assert current(outpost_root, app) == "1.1.0"

    actions = [(entry["action"], entry["version"]) for entry in journal(outpost_root, app)]
    assert actions[-2:] == [("fail", "1.2.0"), ("rollback", "1.1.0")]
    failure = journal(outpost_root, app)[-2]
    assert "503" in failure["reason"]


def test_second_run_changes_nothing_and_restarts_nothing(salt_call, hello_releases, app_settings):
    app = "idempotent"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    pid_before = salt_call.run("shiv_app.get_status", app).data["pid"]

    again = install(salt_call, app, hello_releases["1.0.0"], app_settings)

    assert again["result"] is True
    assert again["changes"] == {}
    assert salt_call.run("shiv_app.get_status", app).data["pid"] == pid_before


def test_test_mode_reports_exactly_what_would_change(salt_call, hello_releases, app_settings):
    app = "dryrun"
    predicted = install(salt_call, app, hello_releases["1.0.0"], app_settings, test=True)
    assert predicted["result"] is None
    assert predicted["changes"]["installed"] == "1.0.0"
    assert predicted["changes"]["version"] == {"old": None, "new": "1.0.0"}
    assert salt_call.run("shiv_app.list_releases", app).data == []

    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    changed_env = dict(app_settings, env={"GREETING": "secret-value-1"})
    predicted = install(salt_call, app, hello_releases["1.1.0"], changed_env, test=True)
    assert predicted["result"] is None
    assert predicted["changes"] == {
        "installed": "1.1.0",
        "version": {"old": "1.0.0", "new": "1.1.0"},
        "settings": {"env": {"added": ["GREETING"]}},
    }
    assert "secret-value-1" not in json.dumps(predicted)

    unchanged = install(salt_call, app, hello_releases["1.0.0"], app_settings, test=True)
    assert unchanged["result"] is True
    assert unchanged["changes"] == {}


def test_wrong_sha256_is_refused_before_anything_changes(
    salt_call, hello_releases, app_settings, outpost_root
):
    app = "hashes"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    before = sorted(os.listdir(pathlib.Path(outpost_root, "apps", app, "releases")))

    wrong = dict(hello_releases["1.1.0"], sha256="0" * 64)
    refused = install(salt_call, app, wrong, app_settings)

    assert refused["result"] is False
    assert "source_hash" in refused["comment"]
    assert sorted(os.listdir(pathlib.Path(outpost_root, "apps", app, "releases"))) == before
    assert os.listdir(pathlib.Path(outpost_root, "apps", app, ".staging")) == []
    assert current(outpost_root, app) == "1.0.0"
    assert healthz(app_settings["port"])["version"] == "1.0.0"


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 70000), ("python", "relative/python"), ("version", "1.0"), ("name", "Bad Name")],
)
def test_bad_input_names_the_field(salt_call, hello_releases, app_settings, field, value):
    release = dict(hello_releases["1.0.0"])
    settings = dict(app_settings)
    app = "badinput"
    if field == "version":
        release["version"] = value
    elif field == "name":
        app = value
    else:
        settings[field] = value

    refused = install(salt_call, app, release, settings)

    assert refused["result"] is False
    assert f"{field}:" in refused["comment"]


def test_rollback_needs_no_download(salt_call, hello_releases, app_settings, tmp_path):
    app = "offline"
    local = {}
    for version in ("1.0.0", "1.1.0"):
        copy = tmp_path / f"{version}.pyz"
        copy.write_bytes(pathlib.Path(hello_releases[version]["path"]).read_bytes())
        local[version] = dict(hello_releases[version], source=str(copy))
        assert install(salt_call, app, local[version], app_settings)["result"] is True
    for copy in tmp_path.glob("*.pyz"):
        copy.unlink()

    predicted = single(salt_call, "shiv_app.rolled_back", test=True, name=app, version="1.0.0")
    assert predicted["result"] is None
    assert predicted["changes"] == {"version": {"old": "1.1.0", "new": "1.0.0"}}

    rolled = single(salt_call, "shiv_app.rolled_back", name=app, version="1.0.0")
    assert rolled["result"] is True, rolled
    assert healthz(app_settings["port"])["version"] == "1.0.0"
    again = single(salt_call, "shiv_app.rolled_back", name=app, version="1.0.0")
    assert again["changes"] == {}


def test_keep_prunes_old_releases_and_their_extractions(
    salt_call, hello_releases, app_settings, outpost_root
):
    app = "prune"
    releases_dir = pathlib.Path(outpost_root, "apps", app, "releases")
    for version in ("1.0.0", "1.1.0"):
        assert install(salt_call, app, hello_releases[version], app_settings, keep=5)["result"]
    assert any((releases_dir / "1.0.0" / "x").iterdir()), "1.0.0 was extracted when it ran"

    third = install(salt_call, app, hello_releases["1.3.0"], app_settings, keep=2)

    assert third["result"] is True, third
    assert third["changes"]["pruned"] == ["1.0.0"]
    assert sorted(os.listdir(releases_dir)) == ["1.1.0", "1.3.0"]


def test_renamed_data_file_follows_its_release(salt_call, hello_releases, app_settings):
    app, port = "datafiles", app_settings["port"]

    assert install(salt_call, app, hello_releases["1.1.0"], app_settings)["result"] is True
    assert "greeting.txt" in page(port)
    assert install(salt_call, app, hello_releases["1.3.0"], app_settings)["result"] is True
    assert "welcome.txt" in page(port)
    assert "greeting.txt" not in page(port)

    rolled = single(salt_call, "shiv_app.rolled_back", name=app, version="1.1.0")
    assert rolled["result"] is True, rolled
    assert "greeting.txt" in page(port)
    assert "welcome.txt" not in page(port)


def test_absent_removes_service_and_releases_but_keeps_journal(
    salt_call, hello_releases, app_settings, outpost_root
):
    app = "removal"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True

    predicted = single(salt_call, "shiv_app.absent", test=True, name=app)
    assert predicted["result"] is None
    assert predicted["changes"] == {"removed": ["1.0.0"]}
    assert salt_call.run("shiv_app.get_status", app).data["service"] == "RUNNING"

    removed = single(salt_call, "shiv_app.absent", name=app)
    assert removed["result"] is True, removed
    assert salt_call.run("shiv_app.get_status", app).data["service"] == "ABSENT"
    assert journal(outpost_root, app)[-1]["action"] == "remove"
    assert single(salt_call, "shiv_app.absent", name=app)["changes"] == {}


def test_stopped_app_is_started_by_the_next_run(
    salt_call, hello_releases, app_settings, supervisord
):
    app = "restart"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    supervisord.ctl_run("stop", f"outpost-{app}")
    assert salt_call.run("shiv_app.get_status", app).data["service"] == "STOPPED"

    again = install(salt_call, app, hello_releases["1.0.0"], app_settings)

    assert again["result"] is True, again
    assert again["changes"] == {"service": {"old": "STOPPED", "new": "RUNNING"}}
    assert healthz(app_settings["port"])["version"] == "1.0.0"


def test_env_values_reach_the_app_exactly_and_never_the_return(
    salt_call, hello_releases, app_settings
):
    """supervisord reads its program file with interpolation and its own quoting: a value with
    quotes, commas or a percent sign must arrive unchanged."""
    app = "environment"
    tricky = 'a "quoted", 100% value\\with backslash'
    settings = dict(app_settings, env={"GREETING": tricky, "OTHER": "x,y=z"})

    applied = install(salt_call, app, hello_releases["1.0.0"], settings)

    assert applied["result"] is True, applied
    assert tricky not in json.dumps(applied)
    pid = salt_call.run("shiv_app.get_status", app).data["pid"]
    environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"GREETING={tricky}".encode() in environ
    assert b"OTHER=x,y=z" in environ


def test_line_breaks_in_env_are_refused(salt_call, hello_releases, app_settings):
    settings = dict(app_settings, env={"GREETING": "one\ncommand=/bin/false"})

    refused = install(salt_call, "linebreak", hello_releases["1.0.0"], settings)

    assert refused["result"] is False
    assert refused["comment"].startswith("linebreak 1.0.0: env: the value of GREETING")
    assert "command=/bin/false" not in refused["comment"]
