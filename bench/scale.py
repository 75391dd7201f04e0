"""
outpost at fifty clients on one machine: one rollout in batches of 10, the master's CPU and memory
while it runs, and the event bus while every client sends heartbeats; the same for 10 clients,
for the ratio.

For each size N (``--sizes``, default 10 and 50) a salt-master with salt-api and N salt-minions
start under ``.bench-scale-N/`` (``demo.lab.Lab``). Each client is light: a salt-minion, its own
supervisord (supervisord names a program after the app, so clients cannot share one) and, once
the rollout reaches it, the hello app. Each client's ``app_health`` beacon checks the app every
second and sends a heartbeat every ``--heartbeat`` seconds (30 by default, ten times production's
300 s; at 2 s, 50 clients outrun the health reactor of a 2-core master: see docs/scaling.md).

Measured, per size:

- the rollout of hello 1.0.0 (a first install: every client downloads the zipapp from the
  master's fileserver), canary 10 then batches of 10, soak 0: from the signed announcement posted
  to salt-api's webhook until every client's /healthz answers with the version;
- the master's CPU (all its processes, salt-api included: CPU seconds over wall seconds, as
  cores) and its memory (the sum of their proportional set sizes, PSS, peak) over the rollout;
- for ``--window`` seconds after it, with every client sending heartbeats: the events per second
  the master's bus carries, heartbeats among them, and the master's CPU meanwhile;
- the memory of one client (its salt-minion processes, PSS), as the median of all.

Run it as ``.venv/bin/python bench/scale.py [--sizes 10,50] [--heartbeat 2] [--window 30]``;
``--keep`` keeps the lab folders (logs under ``var/``). It exits 1 when a run went wrong.
"""

import argparse
import json
import pathlib
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time

import psutil
import salt.config
import salt.utils.event

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.rollout import (  # noqa: E402
    APP,
    BenchError,
    build_releases,
    healthz_version,
    publish,
    say,
    write_client_pillar,
)
from demo.lab import Lab, free_port  # noqa: E402
from outpost.notify import announce, delivered  # noqa: E402

VERSION = "1.0.0"
BATCH = 10
ROLLOUT_TIMEOUT = 1800
# As CI would, post an announcement the master's bus did not take again, timed from the first.
POSTS = 3
SAMPLE_EVERY = 0.5
# Fifty minions starting at once on two busy cores take minutes to answer their first ping.
START_TIMEOUT = 1200


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--sizes", default="10,50", help="numbers of clients (default: 10,50)")
    parser.add_argument(
        "--heartbeat", type=float, default=30, help="seconds between heartbeats (default: 30)"
    )
    parser.add_argument(
        "--window", type=float, default=30, help="seconds the bus is watched (default: 30)"
    )
    parser.add_argument("--keep", action="store_true", help="keep .bench-scale-N/ for a look")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of numbers")
    if any(size < 1 for size in args.sizes) or args.heartbeat < 1 or args.window <= 0:
        parser.error("every size and --heartbeat must be at least 1, --window above 0")
    return args


# -- watching processes ---------------------------------------------------------------------------


def daemon_tree(lab, name):
    """Every process of the lab's daemons called ``name`` (salt-master, salt-api, salt-minion)."""
    found = []
    for process in lab.processes:
        try:
            root = psutil.Process(process.pid)
            if name in " ".join(root.cmdline()):
                found += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return found


def cpu_seconds(processes):
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def rss_bytes(processes):
    """Proportional set sizes summed: forked workers share pages, which RSS would count twice."""
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total


class MasterWatch:
    """The master's (and salt-api's) CPU and peak memory between ``start`` and ``stop``. Worker
    processes come and go, so the tree is read again at each sample and CPU is summed per pid."""

    def __init__(self, lab):
        self.lab = lab
        self.cpu = {}
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree(self):
        return daemon_tree(self.lab, "salt-master") + daemon_tree(self.lab, "salt-api")

    def _sample(self):
        while not self._stop.is_set():
            tree = self._tree()
            for process in tree:
                try:
                    times = process.cpu_times()
                    self.cpu[process.pid] = times.user + times.system
                except psutil.Error:
                    continue
            self.peak = max(self.peak, rss_bytes(tree))
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self):
        self._before = dict(self._read_now())
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def _read_now(self):
        for process in self._tree():
            try:
                times = process.cpu_times()
                yield process.pid, times.user + times.system
            except psutil.Error:
                continue

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.cpu.update(self._read_now())
        self.wall = time.perf_counter() - self.started
        used = sum(value - self._before.get(pid, 0.0) for pid, value in self.cpu.items())
        self.cores = used / self.wall


# -- the lab --------------------------------------------------------------------------------------


class ScaleLab(Lab):
    """The demo's lab, with patience for many clients starting at once."""

    def wait_for_minions(self, timeout=START_TIMEOUT):
        super().wait_for_minions(timeout=timeout)


def client_ids(size):
    return [f"client-{number:02d}" for number in range(1, size + 1)]


def make_lab(size, public, heartbeat):
    clients = client_ids(size)
    apps = {
        APP: {
            "clients": clients,
            "canary": BATCH,
            "batch": BATCH,
            "soak": 0,
            "state_timeout": 600,
        }
    }
    beacon = [{"interval": 1}, {"heartbeat": heartbeat}, {"failures": 3}]
    lab = ScaleLab(
        base=REPO / f".bench-scale-{size}",
        minions=clients,
        apps=apps,
        signing_keys=[public],
        secret=secrets.token_hex(16),
        # Heartbeats are recorded; nobody is reported missing while the bench runs.
        health={"check_every": 600, "missing_after": 3600},
        minion_options={"beacons": {"app_health": beacon}},
    )
    return lab, clients


def roll_out(lab, shipped, ports):
    """Announce the release and wait until every client answers with it; seconds to all live."""
    release, artifact_url = shipped[VERSION]
    started = time.perf_counter()
    for attempt in range(1, POSTS + 1):
        status, reason, answer = announce(release, lab.hook_url, artifact_url, lab.secret)
        if delivered(status, answer):
            break
        # salt-api answers {"success": false} when the master's bus did not take the event.
        say(f"  post {attempt}: the webhook answered {status} {reason} {answer[:80]!r}")
        time.sleep(1)
    else:
        raise BenchError(f"the webhook did not take the announcement in {POSTS} posts")
    pending = dict(ports)
    while pending:
        for client, port in list(pending.items()):
            if healthz_version(port) == VERSION:
                del pending[client]
        if pending and time.perf_counter() - started > ROLLOUT_TIMEOUT:
            raise BenchError(f"{len(pending)} clients not live in {ROLLOUT_TIMEOUT}s")
        time.sleep(0.2)
    return time.perf_counter() - started


def watch_bus(lab, seconds):
    """Count the events on the master's bus for ``seconds``: ``(all, heartbeats, runner jobs)``;
    the health reactor hands each heartbeat to a runner, which has events of its own."""
    opts = salt.config.master_config(str(lab.master_dir / "master"))
    counted, heartbeats, runs = 0, 0, 0
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            event = bus.get_event(wait=0.5, full=True)
            if not event:
                continue
            counted += 1
            heartbeats += event["tag"].endswith("/app_health/heartbeat")
            runs += event["tag"].startswith("salt/run/") and event["tag"].endswith("/new")
    return counted, heartbeats, runs


def client_rss(lab):
    per_client = {}
    for process in lab.processes:
        try:
            root = psutil.Process(process.pid)
            line = root.cmdline()
        except psutil.Error:
            continue
        if any("salt-minion" in part for part in line):
            per_client[process.pid] = rss_bytes([root, *root.children(recursive=True)])
    return statistics.median(per_client.values()) if per_client else 0


def measure(size, args, releases, public):
    say(f"N={size}: starting a master, salt-api and {size} clients")
    lab, clients = make_lab(size, public, args.heartbeat)
    try:
        started = time.perf_counter()
        lab.start()
        startup = time.perf_counter() - started
        ports = {client: free_port() for client in clients}
        write_client_pillar(lab, ports)
        shipped = publish(lab, releases)
        say(f"N={size}: up in {startup:.0f}s; rolling out {APP} {VERSION} in batches of {BATCH}")
        with MasterWatch(lab) as during_rollout:
            seconds = roll_out(lab, shipped, ports)
        say(f"N={size}: all live in {seconds:.1f}s; watching the bus for {args.window:.0f}s")
        with MasterWatch(lab) as during_heartbeats:
            events, heartbeats, runs = watch_bus(lab, args.window)
        return {
            "size": size,
            "startup": startup,
            "rollout": seconds,
            "batches": -(-size // BATCH),
            "rollout_cores": during_rollout.cores,
            "rollout_peak_mib": during_rollout.peak / 2**20,
            "events_per_s": events / args.window,
            "heartbeats_per_s": heartbeats / args.window,
            "runs_per_s": runs / args.window,
            "idle_cores": during_heartbeats.cores,
            "idle_mib": during_heartbeats.peak / 2**20,
            "client_mib": client_rss(lab) / 2**20,
        }
    finally:
        lab.salt("*", "shiv_app.remove_app", APP, check=False)
        lab.close()
        if not args.keep:
            shutil.rmtree(lab.base, ignore_errors=True)


ROWS = (
    ("clients", "size", "{:d}"),
    ("batches (canary 10, then 10 each)", "batches", "{:d}"),
    ("lab start (master, api, clients synced)", "startup", "{:.0f} s"),
    ("rollout: announcement to all healthy", "rollout", "{:.1f} s"),
    ("rollout: seconds per client", "per_client", "{:.2f} s"),
    ("master CPU during the rollout", "rollout_cores", "{:.2f} cores"),
    ("master memory, peak, during the rollout", "rollout_peak_mib", "{:.0f} MiB"),
    ("events/s at the master, heartbeats flowing", "events_per_s", "{:.1f}"),
    ("  of which heartbeats/s", "heartbeats_per_s", "{:.1f}"),
    ("  runner jobs/s the reactor started", "runs_per_s", "{:.1f}"),
    ("master CPU with heartbeats only", "idle_cores", "{:.2f} cores"),
    ("master memory with heartbeats only", "idle_mib", "{:.0f} MiB"),
    ("one client's salt-minion (PSS)", "client_mib", "{:.0f} MiB"),
)


def render(results, heartbeat):
    results = sorted(results, key=lambda result: result["size"])
    for result in results:
        result["per_client"] = result["rollout"] / result["size"]
    header = ["measure"] + [f"N={result['size']}" for result in results]
    if len(results) == 2:
        header.append("ratio")
    rows = [header]
    for label, key, fmt in ROWS:
        row = [label] + [fmt.format(result[key]) for result in results]
        if len(results) == 2:
            low, high = results[0][key], results[1][key]
            row.append(f"{high / low:.2f}" if low else "")
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    cpus = psutil.cpu_count()
    load = ", ".join(f"{value:.1f}" for value in psutil.getloadavg())
    lines.append("")
    lines.append(f"heartbeat every {heartbeat:g} s per client; {cpus} CPUs, load average {load}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="outpost-bench-scale-"))
    try:
        releases, public = build_releases(work_dir, [VERSION])
        results = []
        for size in args.sizes:
            results.append(measure(size, args, releases, public))
            # Each size's numbers as soon as they are in: a later size may fail.
            say(json.dumps(results[-1], sort_keys=True))
    except BenchError as err:
        say(f"bench failed: {err}")
        return 1
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(render(results, args.heartbeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
