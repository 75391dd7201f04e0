"""
How long ``shiv_app.installed`` takes to make a new release live, against the app on its own.

One master and one minion (``bench-1``) with its own supervisord, started by ``demo.lab.Lab``
under ``.demo-bench/``. The example app is built once and published; then each run measures:

- the floor: the ``.pyz`` started with the client's Python and a fresh ``SHIV_ROOT``, from
  process start until ``/healthz`` answers 200 with the version;
- an install: ``state.single shiv_app.installed`` of a fresh app name, so the minion fetches,
  installs, extracts, starts and health-gates a release it has never seen;
- a no-op: the same state again, which must change nothing.

For both states the table shows Salt's own ``duration`` of the state (state start to state end,
which is after the health gate passed) and the wall time of the whole ``salt`` command. Run it as
``.venv/bin/python bench/shiv_app_apply.py [--runs N]``; it exits 2 when a target is missed and 1
when a run went wrong.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo.lab import Lab, free_port  # noqa: E402
from tests.support.apps import build_hello  # noqa: E402

MINION = "bench-1"
APP_PYTHON = "/usr/bin/python3"
VERSION = "1.0.0"
# Poll often, so the floor measures the app and not the poller.
FLOOR_POLL = 0.01
FLOOR_TIMEOUT = 60
INSTALL_OVER_FLOOR_TARGET = 1.0
NOOP_TARGET = 1.5


class BenchError(Exception):
    """A run did not do what it should; the numbers would mean nothing."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs (default: 5)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="runs done first and left out (default: 1)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep .demo-bench/ (logs, releases) for a look after"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def say(message):
    print(message, file=sys.stderr, flush=True)


# -- the floor: the app alone -------------------------------------------------------------------


def healthz_version(port):
    """The version ``/healthz`` reports with a 200, or None while it does not."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status != 200:
                return None
            return json.loads(answer.read()).get("version")
    except (OSError, ValueError):
        return None


def measure_floor(pyz, work_dir):
    """Seconds from starting the app as a client would, with nothing extracted, to healthy."""
    shiv_root = tempfile.mkdtemp(prefix="floor-", dir=work_dir)
    port = free_port()
    # A client's service environment: none of this venv's variables.
    env = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": shiv_root, "PORT": str(port)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [APP_PYTHON, str(pyz)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - started < FLOOR_TIMEOUT:
            if healthz_version(port) == VERSION:
                elapsed = time.perf_counter() - started
                if not os.listdir(shiv_root):
                    raise BenchError(f"the app alone extracted nothing into {shiv_root}")
                return elapsed
            if process.poll() is not None:
                raise BenchError(f"the app alone exited with {process.returncode}")
            time.sleep(FLOOR_POLL)
        raise BenchError(f"the app alone was not healthy within {FLOOR_TIMEOUT}s")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the state through the minion ---------------------------------------------------------------


def apply_state(lab, app, release, port):
    """Run ``shiv_app.installed`` on the minion. Returns ``(state result, wall seconds)``."""
    args = [
        f"name={app}",
        f"version={release['version']}",
        f"source={release['source']}",
        # The prefix keeps the hash a string when Salt's CLI parses the argument as YAML.
        f"source_hash=sha256={release['sha256']}",
        f"python={APP_PYTHON}",
        f"port={port}",
    ]
    started = time.perf_counter()
    answer = lab.salt(MINION, "state.single", "shiv_app.installed", *args)
    wall = time.perf_counter() - started
    returned = answer.get(MINION)
    if not isinstance(returned, dict) or len(returned) != 1:
        raise BenchError(f"state.single on {MINION} returned {returned!r}")
    (result,) = returned.values()
    if result.get("result") is not True:
        raise BenchError(f"{app}: the state failed: {result.get('comment')}")
    return result, wall


def measure_release(lab, app, release):
    """One install of a never-seen app, then the same state again. Returns the four numbers."""
    port = free_port()
    installed, install_wall = apply_state(lab, app, release, port)
    if installed["changes"].get("installed") != release["version"]:
        raise BenchError(f"{app}: expected an install, got changes {installed['changes']}")
    if healthz_version(port) != release["version"]:
        raise BenchError(f"{app}: the state passed but /healthz does not report {VERSION}")

    again, noop_wall = apply_state(lab, app, release, port)
    if again["changes"]:
        raise BenchError(f"{app}: the re-apply changed {again['changes']}")
    return {
        "install": installed["duration"] / 1000,
        "install_wall": install_wall,
        "noop": again["duration"] / 1000,
        "noop_wall": noop_wall,
    }


# -- report -------------------------------------------------------------------------------------


def summary(values):
    return statistics.median(values), min(values), max(values)


def verdict(median, target):
    return "PASS" if median < target else "FAIL"


def report_rows(samples):
    """Each measure's name, median/min/max, and its target and verdict if it has one."""
    column = {key: [sample[key] for sample in samples] for key in samples[0]}
    over_floor = [s["install"] - s["floor"] for s in samples]
    return [
        ("floor: app alone, start -> healthy", summary(column["floor"]), "", ""),
        ("install: state duration", summary(column["install"]), "", ""),
        (
            "install minus floor (per run)",
            summary(over_floor),
            f"< {INSTALL_OVER_FLOOR_TARGET:g} s",
            verdict(statistics.median(over_floor), INSTALL_OVER_FLOOR_TARGET),
        ),
        ("install: salt command wall", summary(column["install_wall"]), "", ""),
        (
            "no-op: state duration",
            summary(column["noop"]),
            f"< {NOOP_TARGET:g} s",
            verdict(statistics.median(column["noop"]), NOOP_TARGET),
        ),
        ("no-op: salt command wall", summary(column["noop_wall"]), "", ""),
    ]


def render(rows):
    header = ("measure", "median s", "min s", "max s", "target", "result")
    lines = [header] + [
        (name, f"{mid:.3f}", f"{low:.3f}", f"{high:.3f}", target, result)
        for name, (mid, low, high), target, result in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = []
    for index, line in enumerate(lines):
        cells = [
            cell.ljust(width) if i in (0, 4, 5) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        rendered.append("| " + " | ".join(cells) + " |")
        if index == 0:
            rendered.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(rendered)


# -- main ---------------------------------------------------------------------------------------


def run(args, lab, work_dir, apps):
    say(f"building hello {VERSION}")
    manifest = build_hello(work_dir, VERSION)
    pyz = pathlib.Path(manifest["path"])

    say(f"starting the lab under {lab.base}")
    lab.start()
    release = dict(manifest, source=lab.publish(manifest))

    samples = []
    total = args.warmup + args.runs
    for number in range(1, total + 1):
        measured = number > args.warmup
        app = f"bench{number - args.warmup}" if measured else f"warmup{number}"
        apps.append(app)
        sample = {"floor": measure_floor(pyz, work_dir), **measure_release(lab, app, release)}
        say(
            f"{'run' if measured else 'warm-up'} {app}: floor {sample['floor']:.3f}s, "
            f"install {sample['install']:.3f}s (wall {sample['install_wall']:.3f}s), "
            f"no-op {sample['noop']:.3f}s (wall {sample['noop_wall']:.3f}s)"
        )
        if measured:
            samples.append(sample)

    print(
        f"shiv_app.installed on one minion ({MINION}): {args.runs} runs after {args.warmup} "
        f"warm-up, hello {VERSION} on {APP_PYTHON}"
    )
    # Other work on the machine skews every number: say how busy it was.
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end")
    rows = report_rows(samples)
    print(render(rows))
    print(
        "targets are checked on the median; wall is the whole salt command "
        "(CLI start, publish, job, return)"
    )
    return all(row[3] != "FAIL" for row in rows)


def main(argv=None):
    args = parse_args(argv)
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="outpost-bench-"))
    lab = Lab(base=REPO / ".demo-bench", minions=(MINION,))
    apps = []
    try:
        met = run(args, lab, work_dir, apps)
    except BenchError as err:
        say(f"bench: {err}")
        return 1
    finally:
        # Stop each app through its supervisord before the lab goes, so no app outlives it.
        for app in apps:
            lab.salt(MINION, "shiv_app.remove_app", app, check=False)
        lab.close()
        shutil.rmtree(work_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(lab.base, ignore_errors=True)
    return 0 if met else 2


if __name__ == "__main__":
    sys.exit(main())
