"""
How fast outpost repairs an app on its own, on one client of a local lab.

- killed: SIGKILL to the app's process, until /healthz answers again (the service manager's
  automatic restart does this part);
- stopped: the service stopped behind outpost's back, until /healthz answers again (the beacon sees
  it, the health reactor restarts it);
- bad release: a release that passed its deploy gate turns unhealthy, until the previous release
  answers /healthz again (beacon, restart, relapse within the settle time, rollback).

Each is the median of ``--runs`` (default 5). Target: at most the beacon interval plus 5 s.

    .venv/bin/python bench/self_healing.py [--runs 5]
"""

import argparse
import json
import os
import pathlib
import signal
import statistics
import sys
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo.lab import Lab, free_port  # noqa: E402
from tests.support.apps import build_hello  # noqa: E402

CLIENT = "heal-1"
INTERVAL = 1
FAILS_AFTER = 2
BEACONS = {"app_health": [{"interval": INTERVAL}, {"failures": 1}, {"heartbeat": 60}]}
HEALTH = {"settle": 4, "window": 600, "max_actions": 1000}


def version_at(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return json.loads(answer.read())["version"]
    except OSError:
        return None


def wait_until(predicate, timeout=90, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    raise RuntimeError("timed out")


def install(lab, app, release, port):
    results = lab.salt(
        CLIENT,
        "state.single",
        "shiv_app.installed",
        f"name={app}",
        f"version={release['version']}",
        f"source={release['source']}",
        f"source_hash={release['sha256']}",
        "python=/usr/bin/python3",
        f"port={port}",
        "health_timeout=15",
    )[CLIENT]
    (result,) = results.values()
    if not result["result"]:
        raise RuntimeError(f"install of {app} {release['version']} failed: {result['comment']}")


def pid_of(lab, app):
    return lab.salt(CLIENT, "shiv_app.get_status", app)[CLIENT]["pid"]


def killed(lab, releases, run):
    app, port = f"killed{run}", free_port()
    install(lab, app, releases["1.0.0"], port)
    old = pid_of(lab, app)

    start = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: version_at(port) is None, timeout=5, step=0.005)
    return finished(lab, app, wait_until(lambda: version_at(port) == "1.0.0") - start)


def stopped(lab, releases, run):
    app, port = f"stopped{run}", free_port()
    install(lab, app, releases["1.0.0"], port)

    supervisor = lab.supervisors[CLIENT]
    start = time.monotonic()
    supervisor.ctl_run("stop", f"outpost-{app}")
    return finished(lab, app, wait_until(lambda: version_at(port) == "1.0.0") - start)


def bad_release(lab, releases, run):
    app, port = f"bad{run}", free_port()
    install(lab, app, releases["1.1.0"], port)
    install(lab, app, releases["1.2.0"], port)

    start = wait_until(lambda: version_at(port) != "1.2.0", timeout=30, step=0.02)
    return finished(lab, app, wait_until(lambda: version_at(port) == "1.1.0", timeout=120) - start)


def finished(lab, app, seconds):
    """Remove the app once measured, so every run finds the client as the first one did."""
    lab.salt(CLIENT, "shiv_app.remove_app", app)
    return seconds


def build_releases(lab, work):
    releases = {}
    for version, options in (
        ("1.0.0", {}),
        ("1.1.0", {}),
        ("1.2.0", {"unhealthy_after": FAILS_AFTER}),
    ):
        manifest = build_hello(work, version, **options)
        releases[version] = dict(manifest, source=lab.publish(dict(manifest, name="bench")))
    return releases


def print_table(rows):
    target = INTERVAL + 5
    print(
        f"\nself-healing on one client: beacon interval {INTERVAL} s, failures 1, "
        f"settle {HEALTH['settle']} s, bad release fails {FAILS_AFTER} s after start"
    )
    print(f"| {'measure':<36} | median s | min s | max s | target    | result |")
    print(f"|{'-' * 38}|----------|-------|-------|-----------|--------|")
    for name, samples, gated in rows:
        median = statistics.median(samples)
        verdict = ("PASS" if median <= target else "FAIL") if gated else ""
        goal = f"<= {target} s" if gated else ""
        print(
            f"| {name:<36} | {median:8.2f} | {min(samples):5.2f} | {max(samples):5.2f} "
            f"| {goal:<9} | {verdict:<6} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    work = pathlib.Path(tempfile.mkdtemp(prefix="outpost-bench-heal-"))
    lab = Lab(
        base=REPO / ".bench-healing",
        minions=(CLIENT,),
        health=HEALTH,
        minion_options={"beacons": BEACONS},
    )
    with lab:
        releases = build_releases(lab, work)
        rows = [
            ("app killed -> healthy", [killed(lab, releases, i) for i in range(runs)], True),
            ("service stopped -> healthy", [stopped(lab, releases, i) for i in range(runs)], True),
            (
                "bad release -> rolled back, healthy",
                [bad_release(lab, releases, i) for i in range(runs)],
                True,
            ),
        ]
        for app in lab.salt(CLIENT, "shiv_app.list_apps")[CLIENT]:
            lab.salt(CLIENT, "shiv_app.remove_app", app)
    print_table(rows)


if __name__ == "__main__":
    main()
