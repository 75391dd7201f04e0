"""
Self-healing: the app_health beacon on a real client, the health reactor and the
outpost_health runner on the real master, the app under a real supervisord.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import salt.utils.event

from demo.supervisor import Supervisord
from tests.conftest import app_python, client_overrides, free_port, sync_client
from tests.support.apps import build_hello
from tests.support.cloudflared import VERSIONS, make_token, publish_standin
from tests.support.events import decisions, wait_for
from tests.support.states import healthz, single

pytestmark = pytest.mark.slow

CLIENT = "client-h"


@pytest.fixture(scope="module")
def healer(salt_master, short_root):
    """A client of its own, so its beacon never meets the other tests' deliberate failures."""
    supervisor = Supervisord(short_root / "sv-h").start()
    overrides = client_overrides(short_root / "outpost-h", supervisor)
    # Salt counts beacon intervals in loop_interval ticks but runs beacons once a second:
    # pytest-salt-factories' 0.05 s tick would stretch a 1 s interval to 20 s.
    overrides["loop_interval"] = 1
    overrides["beacons"] = {
        "app_health": [{"interval": 1}, {"failures": 2}, {"heartbeat": 2}],
        "tunnel_health": [{"interval": 1}, {"failures": 2}],
    }
    factory = salt_master.salt_minion_daemon(CLIENT, overrides=overrides)
    try:
        with factory.started():
            sync_client(factory)
            yield factory
    finally:
        supervisor.stop()


@pytest.fixture(scope="module")
def published(ext_tree, tmp_path_factory):
    """hello 1.0.0 and 1.1.0, and a 1.2.0 that turns unhealthy 5 s after it starts."""
    folder = ext_tree / "releases" / "healer"
    folder.mkdir(parents=True, exist_ok=True)
    releases = {}
    for version, options in (("1.0.0", {}), ("1.1.0", {}), ("1.2.0", {"unhealthy_after": 5})):
        manifest = build_hello(tmp_path_factory.mktemp(f"h{version}"), version, **options)
        target = folder / f"hello-{version}.pyz"
        shutil.copy(manifest["path"], target)
        releases[version] = dict(manifest, source=f"salt://releases/healer/{target.name}")
    return releases


def install(healer, app, release, port):
    return single(
        healer.salt_call_cli(timeout=120),
        "shiv_app.installed",
        name=app,
        version=release["version"],
        source=release["source"],
        source_hash=release["sha256"],
        python=app_python(),
        port=port,
        health_timeout=10,
    )


def version_or_none(port):
    try:
        return healthz(port, timeout=1)["version"]
    except OSError:
        return None


def test_a_stopped_app_is_restarted_and_healthy_again(
    healer, published, event_listener, salt_master
):
    app, port = "stopped", free_port()
    assert install(healer, app, published["1.0.0"], port)["result"] is True
    start = time.time()

    healer.salt_call_cli().run("shiv_app.get_status", app)
    supervisor_ctl(healer, "stop", f"outpost-{app}")

    assert wait_for(lambda: "restart" in decisions(event_listener, salt_master, CLIENT, app, start))
    assert version_or_none(port) == "1.0.0"


def test_a_killed_app_is_healthy_again(healer, published):
    app, port = "killed", free_port()
    assert install(healer, app, published["1.0.0"], port)["result"] is True
    pid = healer.salt_call_cli().run("shiv_app.get_status", app).data["pid"]

    os.kill(pid, signal.SIGKILL)

    assert wait_for(lambda: version_or_none(port) == "1.0.0")


def test_a_release_failing_after_its_gate_is_rolled_back(
    healer, published, event_listener, salt_master
):
    app, port = "latefail", free_port()
    assert install(healer, app, published["1.1.0"], port)["result"] is True
    start = time.time()

    assert install(healer, app, published["1.2.0"], port)["result"] is True

    assert wait_for(
        lambda: "rollback" in decisions(event_listener, salt_master, CLIENT, app, start), 90
    )
    made = decisions(event_listener, salt_master, CLIENT, app, start)
    assert [d for d in made if d not in ("recovered", "merged")][0] == "rollback"
    (event,) = event_listener.get_events(
        [(salt_master.id, f"outpost/remediation/{CLIENT}/{app}/rollback")], after_time=start
    )
    assert "a restart did not help" in event.data["reason"]
    assert wait_for(lambda: version_or_none(port) == "1.1.0")


def test_identical_events_at_once_make_one_remediation(
    healer, published, event_listener, salt_master
):
    app, port = "dupes", free_port()
    assert install(healer, app, published["1.0.0"], port)["result"] is True
    start = time.time()

    tag = f"salt/beacon/{CLIENT}/app_health/{app}/unhealthy"
    with salt.utils.event.get_master_event(
        salt_master.config, salt_master.config["sock_dir"], listen=False
    ) as bus:
        for _ in range(10):
            bus.fire_event({"app": app, "reason": "told so by the test"}, tag)

    assert wait_for(lambda: len(decisions(event_listener, salt_master, CLIENT, app, start)) == 10)
    made = decisions(event_listener, salt_master, CLIENT, app, start)
    assert made.count("merged") == 9
    assert len([d for d in made if d != "merged"]) == 1


def test_forged_unhealthy_events_for_every_client_or_a_healthy_one_do_nothing(
    healer, published, event_listener, salt_master
):
    """From a client, `event.send salt/beacon/*/app_health/hello/unhealthy` made the master
    restart the app on every client; a forged event for a healthy client restarted it too."""
    app, port = "forged", free_port()
    assert install(healer, app, published["1.0.0"], port)["result"] is True
    pid = healer.salt_call_cli().run("shiv_app.get_status", app).data["pid"]
    start = time.time()

    caller = healer.salt_call_cli(timeout=60)
    for client in ("*", CLIENT):
        sent = caller.run("event.send", f"salt/beacon/{client}/app_health/{app}/unhealthy")
        assert sent.data is True

    assert wait_for(lambda: decisions(event_listener, salt_master, CLIENT, app, start), 90)
    assert decisions(event_listener, salt_master, CLIENT, app, start) == ["not-confirmed"]
    forged = event_listener.get_events(
        [(salt_master.id, f"outpost/remediation/[*]/{app}/*")], after_time=start
    )
    assert not forged
    assert healer.salt_call_cli().run("shiv_app.get_status", app).data["pid"] == pid


def test_a_flapping_app_gets_bounded_actions_then_an_alert(
    healer, published, event_listener, salt_master
):
    app, port = "flapping", free_port()
    assert install(healer, app, published["1.0.0"], port)["result"] is True
    start = time.time()

    for _ in range(4):
        supervisor_ctl(healer, "stop", f"outpost-{app}")
        time.sleep(4)

    assert wait_for(
        lambda: "alert" in decisions(event_listener, salt_master, CLIENT, app, start), 60
    )
    made = decisions(event_listener, salt_master, CLIENT, app, start)
    assert len([d for d in made if d in ("restart", "rollback")]) <= 2, made
    alerts = event_listener.get_events(
        [(salt_master.id, f"outpost/alert/{CLIENT}/{app}")], after_time=start
    )
    assert alerts


def test_a_refused_health_url_is_an_event_and_the_beacon_keeps_running(
    healer, published, event_listener, salt_master
):
    app, port = "refused", free_port()
    assert install(healer, app, published["1.0.0"], port)["result"] is True
    healer.salt_call_cli().run("beacons.disable_beacon", "app_health")
    supervisor_ctl(healer, "stop", f"outpost-{app}")
    start = time.time()
    healer.salt_call_cli().run("beacons.enable_beacon", "app_health")

    unhealthy = event_listener.wait_for_events(
        [(salt_master.id, f"salt/beacon/{CLIENT}/app_health/{app}/unhealthy")],
        timeout=30,
        after_time=start,
    )
    assert unhealthy.found_all_events
    (event,) = unhealthy.matches
    assert "refused" in event.data["reason"].lower()
    later = time.time()
    heartbeat = event_listener.wait_for_events(
        [(salt_master.id, f"salt/beacon/{CLIENT}/app_health/heartbeat")],
        timeout=30,
        after_time=later,
    )
    assert heartbeat.found_all_events


def test_a_tunnel_that_is_not_ready_gets_its_connector_restarted(
    healer, ext_tree, short_root, event_listener, salt_master
):
    """The connector keeps running but has lost its edge: /ready answers 503."""
    releases = publish_standin(ext_tree, "cloudflared-h", free_port(), short_root / "none.json")
    metrics = f"127.0.0.1:{free_port()}"
    caller = healer.salt_call_cli(timeout=120)
    token = make_token(str(uuid.uuid4()))
    assert single(caller, "cloudflared.installed", name="cf", **releases[VERSIONS[0]])["result"]
    assert single(caller, "cloudflared.configured", name="cf", ingress=[], metrics=metrics)[
        "result"
    ]
    try:
        assert single(caller, "cloudflared.running", name="cf", token=token)["result"] is True
        pid = caller.run("cloudflared.get_status").data["pid"]
        start = time.time()

        urllib.request.urlopen(
            urllib.request.Request(f"http://{metrics}/standin/lose-edge", method="POST"), timeout=5
        ).close()

        restarted = f"outpost/remediation/{CLIENT}/cloudflared/restart"
        found = event_listener.wait_for_events(
            [(salt_master.id, restarted)], timeout=60, after_time=start
        )
        assert found.found_all_events, decisions(
            event_listener, salt_master, CLIENT, "cloudflared", start
        )
        status = caller.run("cloudflared.get_status").data
        assert (status["healthy"], status["service"]) == (True, "RUNNING")
        assert status["pid"] != pid
    finally:
        caller.run("cloudflared.remove_service")


def test_lost_heartbeats_raise_client_missing(healer, event_listener, salt_master):
    start = time.time()
    healer.terminate()
    try:
        missing = event_listener.wait_for_events(
            [(salt_master.id, f"outpost/client/{CLIENT}/missing")], timeout=60, after_time=start
        )
        assert missing.found_all_events
    finally:
        healer.start()


def supervisor_ctl(healer, *args):
    config = healer.config["outpost"]["supervisor"]
    supervisorctl = pathlib.Path(sys.executable).parent / "supervisorctl"
    subprocess.run(
        [str(supervisorctl), "-c", config["conf_file"], *args], check=False, capture_output=True
    )
