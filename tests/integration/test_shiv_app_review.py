"""
Regressions found by reviewing the release lifecycle: each test's docstring says what went wrong.
"""

import os
import pathlib
import shutil
import threading
import time

import pytest

from tests.integration.test_shiv_app import current, install
from tests.support.apps import build_hello
from tests.support.states import healthz, single

pytestmark = pytest.mark.slow


def test_changed_content_under_an_installed_version_is_refused(
    salt_call, hello_releases, app_settings
):
    """install_release overwrote release 1.0.0, even the live one, with 1.1.0's bytes."""
    app = "samever"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    other = hello_releases["1.1.0"]

    ret = salt_call.run("shiv_app.install_release", app, "1.0.0", other["source"], other["sha256"])

    assert ret.returncode != 0
    assert "source_hash:" in str(ret.stderr) + str(ret.stdout)
    assert healthz(app_settings["port"])["version"] == "1.0.0"


@pytest.mark.parametrize(("field", "value"), [("keep", 0), ("health_timeout", "abc")])
def test_bad_keep_or_timeout_fails_before_anything_is_installed(
    salt_call, hello_releases, app_settings, field, value
):
    """keep=0 and health_timeout=abc were only noticed after the release had gone live."""
    app = f"early{field.replace('_', '')}"

    settings = dict(app_settings, **{field: value})
    refused = install(salt_call, app, hello_releases["1.0.0"], settings)

    assert refused["result"] is False
    assert f"{field}:" in refused["comment"]
    assert salt_call.run("shiv_app.list_releases", app).data == []


def test_settings_left_out_of_the_state_go_back_to_their_defaults(
    salt_call, hello_releases, app_settings
):
    """A health_url removed from the state stayed in force, pointing the gate at another app."""
    app = "resets"
    port = app_settings["port"]
    with_url = dict(app_settings, health_url=f"http://127.0.0.1:{port}/healthz?x=1")
    assert install(salt_call, app, hello_releases["1.0.0"], with_url)["result"] is True

    predicted = install(salt_call, app, hello_releases["1.0.0"], app_settings, test=True)

    assert predicted["changes"]["settings"]["health_url"]["new"] is None


def test_a_program_that_was_never_loaded_is_loaded_by_the_next_run(
    salt_call, hello_releases, app_settings, supervisord
):
    """After a failed start the program was missing from supervisord, and every later run
    failed with 'no such process' because the restart path never wrote the program again."""
    app = "reload"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    (supervisord.include_dir / f"outpost-{app}.conf").unlink()
    supervisord.ctl_run("update")
    assert salt_call.run("shiv_app.get_status", app).data["service"] == "ABSENT"

    again = install(salt_call, app, hello_releases["1.0.0"], app_settings)

    assert again["result"] is True, again
    assert healthz(app_settings["port"])["version"] == "1.0.0"


def test_rolled_back_to_a_release_that_is_not_installed_fails_in_test_mode(
    salt_call, hello_releases, app_settings
):
    """test=True promised a rollback to a version that was never installed."""
    app = "nosuchrelease"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True

    predicted = single(salt_call, "shiv_app.rolled_back", test=True, name=app, version="9.9.9")

    assert predicted["result"] is False
    assert "9.9.9 is not installed" in predicted["comment"]


def test_activation_and_rollback_at_once_do_not_interleave(
    salt_call, salt_minion, hello_releases, app_settings, outpost_root
):
    """A rollback reported success, then a failing activation's automatic restore put another
    release live behind its back."""
    app = "racing"
    for version in ("1.0.0", "1.1.0"):
        assert install(salt_call, app, hello_releases[version], app_settings)["result"] is True
    broken = hello_releases["1.2.0"]
    salt_call.run("shiv_app.install_release", app, "1.2.0", broken["source"], broken["sha256"])

    second_caller = salt_minion.salt_call_cli(timeout=120)
    activation = threading.Thread(
        target=second_caller.run,
        args=("shiv_app.activate_release", app, "1.2.0", "health_timeout=4"),
    )
    activation.start()
    while current(outpost_root, app) != "1.2.0":
        time.sleep(0.01)
    rollback = salt_call.run("shiv_app.rollback_release", app, "1.0.0")
    activation.join()

    assert rollback.returncode == 0, rollback
    assert rollback.data["live"] == "1.0.0"
    assert current(outpost_root, app) == "1.0.0"
    assert healthz(app_settings["port"])["version"] == "1.0.0"


def test_an_own_service_account_can_extract_and_run(
    salt_call, hello_releases, app_settings, short_root, outpost_root
):
    """With user= the app died on a PermissionError: its SHIV_ROOT belonged to root."""
    os.chmod(short_root, 0o755)  # noqa: S103 - the service account must reach its folder
    app = "ownuser"

    applied = install(salt_call, app, hello_releases["1.0.0"], app_settings, user="nobody")

    assert applied["result"] is True, applied
    shiv_root = pathlib.Path(outpost_root, "apps", app, "releases", "1.0.0", "x")
    assert shiv_root.stat().st_uid != 0
    assert healthz(app_settings["port"])["version"] == "1.0.0"


@pytest.mark.parametrize(
    ("function", "arguments", "field"),
    [
        ("shiv_app.check_health", ["timeout=abc"], "timeout:"),
        ("shiv_app.check_health", ["retries=0"], "retries:"),
        ("shiv_app.check_health", ["retries=many"], "retries:"),
        ("shiv_app.restart_app", ["settle=-1"], "settle:"),
    ],
)
def test_bad_health_check_numbers_name_their_field(
    salt_call, hello_releases, app_settings, function, arguments, field
):
    """check_health parsed timeout and retries with a bare int() and answered with a traceback."""
    app = "numbers"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True

    refused = salt_call.run(function, app, *arguments)

    assert refused.returncode != 0
    assert field in str(refused.stdout) + str(refused.stderr)
    assert healthz(app_settings["port"])["version"] == "1.0.0"


def test_a_restart_that_relapses_while_settling_fails_and_says_when(
    salt_call, ext_tree, hello_releases, app_settings, tmp_path
):
    """The master polled a restarted app over the event bus once a second; now the client
    watches it settle, and a relapse fails the restart."""
    app = "relapse"
    assert install(salt_call, app, hello_releases["1.0.0"], app_settings)["result"] is True
    assert salt_call.run("shiv_app.restart_app", app, "settle=1").data["restarted"] == "1.0.0"
    manifest = build_hello(tmp_path, "2.0.0", unhealthy_after=2)
    (ext_tree / "releases" / app).mkdir(parents=True, exist_ok=True)
    shutil.copy(manifest["path"], ext_tree / "releases" / app / "hello-2.0.0.pyz")
    failing = dict(manifest, source=f"salt://releases/{app}/hello-2.0.0.pyz")
    assert install(salt_call, app, failing, app_settings)["result"] is True

    relapsed = salt_call.run("shiv_app.restart_app", app, "settle=8")

    assert relapsed.returncode != 0
    assert "unhealthy again" in str(relapsed.stdout) + str(relapsed.stderr)
    journal = salt_call.run("shiv_app.read_journal", app).data
    assert (journal[-1]["action"], journal[-1]["result"]) == ("restart", False)
