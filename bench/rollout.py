"""
How long outpost takes from CI's announcement of a release to every client healthy on it, next to
one minion's own state run and to Ansible doing the same job on the same clients.

For each size N (``--sizes``, default 3 and 10) a salt-master with salt-api and N minions, each
with its own supervisord and its own port for the app, start under ``.bench-rollout-N/``
(``demo.lab.Lab``). Every release of hello is built, signed and published before anything is
timed, so no build time is measured. hello 1.0.0 then goes everywhere (a rollout, not timed), and
each run measures three things, every one of them a switch to a version its clients have never
seen, so each downloads or copies a fresh zipapp:

- outpost: from the moment the signed announcement is posted to salt-api's webhook (as
  ``outpost release notify`` posts it: same body, HMAC and headers) until every client's
  /healthz answers 200 with the new version. The app is configured with canary 1, then the
  rest at once (batch "100%"), and soak 0. The time the rollout recorded itself as succeeded
  is shown beside it.
- one minion: the wall time of ``salt client-1 state.apply outpost.apps`` with the next version
  named in pillar, the single-minion reference.
- Ansible: the wall time of ``ansible-playbook bench/ansible/rollout.yml`` doing the same switch
  on the same clients over ``ansible_connection: local``, in outpost's batches, with its own
  release folders, program and port in each client's supervisord.

A ``salt client-1 test.ping`` after each single-minion run shows how much of that wall is the
CLI rather than the job. After the table, the median rollout of each size is taken apart from the
master's and minions' logs: the reactor, the orchestration's start, each batch's promote, state
run and gate, and on each client the job's fork, pillar, render and ``shiv_app.installed``.

Targets, on the medians: 10 clients rolled out in under 2.5 times the single-minion state run
(no soak), and outpost ahead of Ansible at every size. Run it as ``.venv/bin/python
bench/rollout.py [--sizes 3,10] [--runs 3] [--keep]``; it exits 2 when a target is missed and 1
when a run went wrong. With ``--keep`` the lab folders stay, with the master's and minions' logs
under ``var/`` and the Ansible output in ``ansible.log``.
"""

import argparse
import datetime
import json
import logging
import math
import os
import pathlib
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo.lab import BIN, Lab, free_port  # noqa: E402
from outpost.manifest import load_release  # noqa: E402
from outpost.notify import announce, delivered  # noqa: E402
from outpost.publish import publish_to_folder  # noqa: E402
from outpost.signing import generate_keys, load_public_key, sign_manifest  # noqa: E402
from tests.support.apps import build_hello  # noqa: E402

APP = "hello"
APP_PYTHON = "/usr/bin/python3"
FIRST_VERSION = "1.0.0"
CANARY = 1
BATCH = "100%"
SOAK = 0
# Seconds a release has to become healthy, in outpost's pillar and in the Ansible play alike.
HEALTH_TIMEOUT = 8
PLAYBOOK = REPO / "bench" / "ansible" / "rollout.yml"
# How often the clock polls each client not yet live: 50 ms is 1% of a rollout, and polling every
# 20 ms cost a third of a core that the rollout then lacked.
POLL = 0.05
RUN_TIMEOUT = 300
SINGLE_CLIENT_INDEX = 0
RATIO_TARGET = 2.5


class BenchError(Exception):
    """A run did not do what it should; the numbers would mean nothing."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--sizes", default="3,10", help="numbers of clients, one lab each (default: 3,10)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (default: 3)")
    parser.add_argument(
        "--keep", action="store_true", help="keep .bench-rollout-N/ (logs) for a look after"
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of numbers")
    if args.runs < 1 or any(size < 1 for size in args.sizes):
        parser.error("--runs and every size must be at least 1")
    return args


def say(message):
    print(message, file=sys.stderr, flush=True)


# -- releases -----------------------------------------------------------------------------------


def run_versions(runs):
    """Versions of each run: ``1.<run>.0`` for rollouts and Ansible, ``1.<run>.1`` for one
    minion, so no measured switch finds its release already on the client."""
    return {
        "rollout": [f"1.{run}.0" for run in range(1, runs + 1)],
        "single": [f"1.{run}.1" for run in range(1, runs + 1)],
    }


def build_releases(work_dir, versions):
    """Build and sign every release, as CI's build and sign steps do; returns them by version."""
    key = work_dir / "signing.pem"
    public = generate_keys(key, work_dir / "signing.pub")
    releases = {}
    for version in versions:
        say(f"building hello {version}")
        manifest = build_hello(work_dir, version, app_name=APP)
        release = load_release(manifest["manifest_path"])
        sign_manifest(release, key)
        releases[version] = release
    return releases, public


def publish(lab, releases, work_dir):
    """CI's publish step into the lab's fileserver: ``{version: (release, artifact URL)}``."""
    public_key = load_public_key(work_dir / "signing.pub")
    return {
        version: (release, publish_to_folder(release, lab.releases_dir, public_key))
        for version, release in releases.items()
    }


# -- the lab ------------------------------------------------------------------------------------


def client_ids(size):
    return [f"client-{number}" for number in range(1, size + 1)]


def outpost_batches(clients):
    """outpost's plan for online clients: the canary ring, then the rest in BATCH-sized batches."""
    ordered = sorted(clients)
    canary, rest = ordered[:CANARY], ordered[CANARY:]
    step = max(1, math.ceil(len(rest) * float(BATCH.rstrip("%")) / 100)) if rest else 1
    return [canary] + [rest[start : start + step] for start in range(0, len(rest), step)]


def write_client_pillar(lab, ports):
    """Each client's settings for the app; the registry adds which release it runs."""
    settings = {
        client: {APP: {"python": APP_PYTHON, "port": port, "health_timeout": HEALTH_TIMEOUT}}
        for client, port in ports.items()
    }
    (lab.pillar_dir / "outpost_apps.sls").write_text(
        "{% set apps = " + json.dumps(settings) + " %}\n"
        "outpost:\n  apps: {{ apps.get(grains['id'], {}) | json }}\n"
    )
    (lab.pillar_dir / "top.sls").write_text("base:\n  '*':\n    - outpost_apps\n")
    lab.salt("*", "saltutil.refresh_pillar", "wait=True")


# -- watching clients ---------------------------------------------------------------------------


def healthz_version(port):
    """The version ``/healthz`` names with a 200, or None while it does not."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return json.loads(answer.read()).get("version") if answer.status == 200 else None
    except (OSError, ValueError):
        return None


def wait_all_live(ports, version, started, timeout=RUN_TIMEOUT):
    """Poll every client until each names ``version``; returns ``{client: seconds}`` since
    ``started`` (a ``perf_counter`` reading) at which each was first seen live."""
    pending, live = dict(ports), {}
    while pending:
        for client, port in list(pending.items()):
            if healthz_version(port) == version:
                live[client] = time.perf_counter() - started
                del pending[client]
        if pending and time.perf_counter() - started > timeout:
            raise BenchError(f"{', '.join(sorted(pending))} not live on {version} in {timeout}s")
        time.sleep(POLL)
    return live


def latest_rollout(lab, version):
    """The newest rollout of ``version``, read straight from the registry without a salt-run."""
    if not lab.registry_path.exists():
        return None
    uri = f"file:{lab.registry_path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as connection:
        row = connection.execute(
            "SELECT id, status, phase, reason, created_at, updated_at FROM rollouts "
            "WHERE app = ? AND version = ? ORDER BY id DESC LIMIT 1",
            (APP, version),
        ).fetchone()
    keys = ("id", "status", "phase", "reason", "created_at", "updated_at")
    return dict(zip(keys, row, strict=True)) if row else None


def wait_rollout_done(lab, version, timeout=RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout = latest_rollout(lab, version)
        if rollout and rollout["status"] in ("succeeded", "halted", "superseded"):
            return rollout
        time.sleep(0.2)
    raise BenchError(f"the rollout of {version} did not finish within {timeout}s")


def epoch(iso):
    return datetime.datetime.fromisoformat(iso).timestamp()


def busy_cpu_seconds():
    """Core-seconds the whole machine has spent busy since boot (``/proc/stat``): what a run
    costs in CPU, the master's, every client's and every app's together."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user, nice, system, irq, softirq; not idle, iowait, nor steal (the hypervisor's).
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / os.sysconf("SC_CLK_TCK")


# -- outpost ------------------------------------------------------------------------------------


def roll_out(lab, shipped, version, ports):
    """Announce ``version`` and time it until every client is live. Returns the run's numbers."""
    release, artifact_url = shipped[version]
    posted_at = time.time()
    started = time.perf_counter()
    cpu_before = busy_cpu_seconds()
    status, reason, answer = announce(release, lab.hook_url, artifact_url, lab.secret)
    if not delivered(status, answer):
        raise BenchError(f"the webhook answered {status} {reason} to {version}")
    live = wait_all_live(ports, version, started)
    cpu = busy_cpu_seconds() - cpu_before
    rollout = wait_rollout_done(lab, version)
    if rollout["status"] != "succeeded":
        raise BenchError(f"rollout of {version} {rollout['status']}: {rollout['reason']}")
    return {
        "seconds": max(live.values()),
        "cpu": cpu,
        "live": live,
        "posted_at": posted_at,
        "accepted": epoch(rollout["created_at"]) - posted_at,
        "succeeded": epoch(rollout["updated_at"]) - posted_at,
        "rollout": rollout["id"],
    }


def apply_one(lab, client, shipped, version, port):
    """``state.apply outpost.apps`` on one client with ``version`` named in its pillar, as the
    registry would name it. Returns ``(wall seconds, the state's own seconds, core-seconds)``."""
    release, artifact_url = shipped[version]
    wanted = {
        "version": version,
        "source": artifact_url,
        "source_hash": f"sha256={release.manifest['sha256']}",
    }
    pillar = json.dumps({"outpost": {"apps": {APP: wanted}}})
    started = time.perf_counter()
    cpu_before = busy_cpu_seconds()
    answer = lab.salt(client, "state.apply", "outpost.apps", f"pillar={pillar}")
    wall = time.perf_counter() - started
    cpu = busy_cpu_seconds() - cpu_before
    returned = answer.get(client)
    if not isinstance(returned, dict) or len(returned) != 1:
        raise BenchError(f"state.apply on {client} returned {returned!r}")
    (result,) = returned.values()
    if result.get("result") is not True or not result.get("changes"):
        raise BenchError(f"state.apply on {client} did not switch: {result.get('comment')}")
    if healthz_version(port) != version:
        raise BenchError(f"{client}: the state passed but /healthz does not name {version}")
    return wall, result["duration"] / 1000, cpu


# -- Ansible ------------------------------------------------------------------------------------


def write_inventory(lab, work_dir, ports):
    """One host per client, in outpost's batch order, each with its own folder and port."""
    hosts = {}
    for client in sorted(ports):
        supervisor = lab.supervisors[client]
        hosts[client] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "app_root": str(lab.base / "ansible" / client),
            "app_port": ports[client],
            "supervisor_conf": str(supervisor.conf_file),
            "supervisor_include": str(supervisor.include_dir),
            "supervisorctl": supervisor.ctl,
        }
    path = work_dir / f"inventory-{len(ports)}.yml"
    path.write_text(yaml.safe_dump({"clients": {"hosts": hosts}}, sort_keys=False))
    return path


def ansible_env(work_dir, forks):
    home = work_dir / "ansible-home"
    return dict(
        os.environ,
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_FORKS=str(forks),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )


def ansible_play(lab, work_dir, inventory, release, version, clients, ports):
    """Run the play for ``version``; returns ``(wall seconds, seconds until all live)``."""
    serial = [len(batch) for batch in outpost_batches(clients)]
    extra = {
        "app": APP,
        "app_version": version,
        "app_pyz": str(release.pyz),
        "app_python": APP_PYTHON,
        "batches": serial,
    }
    extra_path = work_dir / f"ansible-{version}.json"
    extra_path.write_text(json.dumps(extra))
    command = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK)]
    command += ["-e", f"@{extra_path}"]
    live = {}

    def watch():
        try:
            live.update(wait_all_live(ports, version, started))
        except BenchError as err:
            live["error"] = str(err)

    with open(lab.base / "ansible.log", "a", encoding="utf-8") as log:
        log.write(f"\n== {' '.join(command)}\n")
        log.flush()
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
            env=ansible_env(work_dir, max(serial)),
        )
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        process.wait(timeout=RUN_TIMEOUT)
        wall = time.perf_counter() - started
        watcher.join(timeout=RUN_TIMEOUT)
    if process.returncode:
        raise BenchError(f"ansible-playbook exited {process.returncode}; see {log.name}")
    if "error" in live:
        raise BenchError(f"Ansible: {live['error']}")
    return wall, max(live.values())


def remove_ansible_programs(lab):
    for supervisor in lab.supervisors.values():
        program = supervisor.include_dir / f"ansible-{APP}.conf"
        if program.exists():
            program.unlink()
            supervisor.ctl_run("update")


# -- where the time goes ------------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
STATE_RUN = re.compile(r"Running state \[(?P<name>[^\]]+)\] at time")
STATE_DONE = re.compile(r"Completed state \[(?P<name>[^\]]+)\] .*duration_in_ms=(?P<ms>[\d.]+)")
JOB_ARRIVED = re.compile(r"Executing command (?P<fun>\S+) with jid (?P<jid>\d+)")
JOB_FORKED = re.compile(r"Starting a new job (?P<jid>\d+)")
# salt.state logs this once the State object holds its freshly compiled pillar.
PILLAR_DONE = "Loading fresh modules for state activity"
JOB_RETURN = re.compile(r"Returning information for job: (?P<jid>\d+)")


def log_lines(path, since, until):
    """``(epoch seconds, text)`` of each line of a Salt log written within the window."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match:
            stamp = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if since <= stamp <= until:
                found.append((stamp, line))
    return found


def master_steps(lab, run):
    """When the runner accepted the release, and each orchestration step as
    ``(batch, step, start, seconds)``, all in seconds after the post."""
    posted = run["posted_at"]
    lines = log_lines(lab.base / "var" / "master.log", posted - 1, posted + run["succeeded"] + 1)
    accepted = next((stamp - posted for stamp, text in lines if "accepted; rollout" in text), None)
    steps, opened, batch = [], {}, -1
    for stamp, text in lines:
        started = STATE_RUN.search(text)
        if started:
            opened[started["name"]] = stamp - posted
            continue
        done = STATE_DONE.search(text)
        if not done or done["name"] not in opened:
            continue
        name = done["name"]
        step = name.rsplit("-", 1)[-1] if name.startswith("outpost-orch") else name.split(".")[-1]
        batch += step == "promote"
        number = None if step == "finish" else batch
        steps.append((number, step, opened.pop(name), float(done["ms"]) / 1000))
    return accepted, steps


def minion_job(lab, client, since, until):
    """The first ``state.sls`` job of a client in the window, as the moments of its phases."""
    job = {}
    for stamp, text in log_lines(lab.base / "var" / f"{client}.log", since, until):
        arrived = JOB_ARRIVED.search(text)
        if arrived and not job:
            if arrived["fun"] == "state.sls":
                job = {"arrived": stamp, "jid": arrived["jid"]}
            continue
        if not job or "returned" in job:
            continue
        if JOB_FORKED.search(text):
            job["forked"] = stamp
        elif PILLAR_DONE in text:
            job["pillar"] = stamp
        elif STATE_RUN.search(text):
            job["state"] = stamp
        elif STATE_DONE.search(text):
            job["state_seconds"] = float(STATE_DONE.search(text)["ms"]) / 1000
        elif JOB_RETURN.search(text):
            job["returned"] = stamp
    wanted = ("arrived", "forked", "pillar", "state", "state_seconds", "returned")
    return job if all(key in job for key in wanted) else None


def explain_rollout(lab, clients, run):
    """Lines saying where one rollout's time went, from the master's and the minions' logs."""
    posted = run["posted_at"]
    accepted, steps = master_steps(lab, run)
    lines = [
        f"where rollout {run['rollout']} spent its time (s after the webhook post; all live at "
        f"{run['seconds']:.2f}, rollout done at {run['succeeded']:.2f}):",
        f"  {accepted:5.2f}  reactor ran outpost_release.receive, the release is accepted"
        if accepted is not None
        else "  the master log does not say when the release was accepted",
    ]
    if steps:
        lines.append(
            f"  {steps[0][2]:5.2f}  orchestration's first step starts (render orch.rollout, "
            "plan_rollout with its test.ping of every client)"
        )
    batches = outpost_batches(clients)
    for batch, members in enumerate(batches):
        own = {step: (start, seconds) for number, step, start, seconds in steps if number == batch}
        timings = ", ".join(f"{step} {seconds:.2f}" for step, (_, seconds) in own.items())
        start = min((start for start, _ in own.values()), default=0.0)
        lines.append(f"  {start:5.2f}  batch {batch} ({len(members)} of {len(clients)}): {timings}")
        for client in members:
            job = minion_job(lab, client, posted + start, posted + run["succeeded"] + 1)
            if job:
                lines.append("           " + describe_job(job, posted, run["live"][client], client))
    finish = [(start, seconds) for _, step, start, seconds in steps if step == "finish"]
    if finish:
        lines.append(f"  {finish[0][0]:5.2f}  finish {finish[0][1]:.2f}")
    return lines


def describe_job(job, posted, live, client):
    return (
        f"{client}: arrives {job['arrived'] - posted:.2f}"
        f", fork {job['forked'] - job['arrived']:.2f}"
        f", pillar {job['pillar'] - job['forked']:.2f}, render {job['state'] - job['pillar']:.2f}"
        f", shiv_app.installed {job['state_seconds']:.2f}"
        f", live {live:.2f}, returns {job['returned'] - posted:.2f}"
    )


# -- report -------------------------------------------------------------------------------------


def median_text(values):
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.2f}"
    return f"{middle:.2f} ({min(values):.2f}-{max(values):.2f})"


def verdict(passed):
    return "PASS" if passed else "FAIL"


def report_rows(results):
    rows = []
    for size, measured in results.items():
        outpost = statistics.median(run["seconds"] for run in measured["rollout"])
        single = statistics.median(measured["single"])
        ansible = statistics.median(measured["ansible"])
        ratio = outpost / single
        rows.append(
            (
                str(size),
                "+".join(str(len(batch)) for batch in measured["batches"]),
                median_text([run["seconds"] for run in measured["rollout"]]),
                median_text([run["succeeded"] for run in measured["rollout"]]),
                median_text(measured["single"]),
                f"{ratio:.2f}x",
                median_text(measured["ansible"]),
                f"{verdict(ratio < RATIO_TARGET)}"
                if size == 10
                else f"({verdict(ratio < RATIO_TARGET)})",
                verdict(outpost < ansible),
            )
        )
    return rows


def render(rows):
    header = (
        "N",
        "batches",
        "outpost: post -> all live s",
        "rollout done s",
        "1 minion state.apply s",
        "ratio",
        "Ansible s",
        f"< {RATIO_TARGET:g}x single",
        "ahead of Ansible",
    )
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        rendered.append("| " + " | ".join(cells) + " |")
        if index == 0:
            rendered.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(rendered)


# -- main ---------------------------------------------------------------------------------------


def measure_size(size, args, work_dir, releases, public):
    """Start a lab of ``size`` clients, take every measure in it, and take it down again."""
    clients = client_ids(size)
    apps = {APP: {"clients": clients, "canary": CANARY, "batch": BATCH, "soak": SOAK}}
    lab = Lab(
        base=REPO / f".bench-rollout-{size}",
        minions=clients,
        apps=apps,
        signing_keys=[public],
        secret=secrets.token_hex(16),
    )
    say(f"starting a master, salt-api and {size} clients under {lab.base}")
    try:
        lab.start()
        return measure_in_lab(lab, clients, args, work_dir, releases)
    finally:
        take_down(lab, args.keep)


def measure_in_lab(lab, clients, args, work_dir, releases):
    ports = {client: free_port() for client in clients}
    ansible_ports = {client: free_port() for client in clients}
    write_client_pillar(lab, ports)
    shipped = publish(lab, releases, work_dir)
    inventory = write_inventory(lab, work_dir, ansible_ports)
    single_client = clients[SINGLE_CLIENT_INDEX]
    versions = run_versions(args.runs)

    say(f"N={len(clients)}: hello {FIRST_VERSION} goes everywhere first (not timed)")
    first = roll_out(lab, shipped, FIRST_VERSION, ports)
    wall, _ = ansible_play(
        lab, work_dir, inventory, releases[FIRST_VERSION], FIRST_VERSION, clients, ansible_ports
    )
    say(f"  first install: outpost {first['seconds']:.2f}s, Ansible {wall:.2f}s")

    measured = {
        key: [] for key in ("rollout", "single", "single_cpu", "ping", "ansible", "ansible_live")
    }
    measured["explained"] = []
    measured["batches"] = outpost_batches(clients)
    for number in range(args.runs):
        version = versions["rollout"][number]
        run = roll_out(lab, shipped, version, ports)
        measured["rollout"].append(run)
        measured["explained"].append(explain_rollout(lab, clients, run))

        single = versions["single"][number]
        wall, state, cpu = apply_one(lab, single_client, shipped, single, ports[single_client])
        measured["single"].append(wall)
        measured["single_cpu"].append(cpu)
        started = time.perf_counter()
        lab.salt(single_client, "test.ping")
        measured["ping"].append(time.perf_counter() - started)

        ansible_wall, ansible_live = ansible_play(
            lab, work_dir, inventory, releases[version], version, clients, ansible_ports
        )
        measured["ansible"].append(ansible_wall)
        measured["ansible_live"].append(ansible_live)
        say(
            f"  run {number + 1}: outpost {version} all live {run['seconds']:.2f}s "
            f"(done {run['succeeded']:.2f}s); {single_client} state.apply {single} {wall:.2f}s "
            f"(state {state:.2f}s); Ansible {version} {ansible_wall:.2f}s "
            f"(all live {ansible_live:.2f}s)"
        )
    return measured


def take_down(lab, keep):
    # Stop each app through its supervisord before the lab goes, so none outlives it.
    lab.salt("*", "shiv_app.remove_app", APP, check=False)
    remove_ansible_programs(lab)
    lab.close()
    if not keep:
        shutil.rmtree(lab.base, ignore_errors=True)


def print_report(args, results):
    print(
        f"hello on N clients, each with its own supervisord; outpost app config canary {CANARY}, "
        f'batch "{BATCH}", soak {SOAK}; Ansible serial follows the same plan'
    )
    runs = "1 run (no median)" if args.runs == 1 else f"median (min-max) of {args.runs} runs"
    print(f"{runs}; every run switches to a version its clients have not seen")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end")
    print(render(report_rows(results)))
    print(
        "outpost: webhook post -> every client's /healthz names the version; rollout done: when "
        "the rollout recorded success.\n1 minion: wall of `salt client-1 state.apply "
        "outpost.apps`. Ansible: wall of `ansible-playbook` (local connection).\n"
        f"The {RATIO_TARGET:g}x target is for 10 clients; other sizes show it in parentheses."
    )
    for size, measured in results.items():
        print(
            f"\nN={size}: `salt client-1 test.ping` {median_text(measured['ping'])} s, the part of "
            "the single-minion wall that is the CLI and not the job; Ansible until all live "
            f"{median_text(measured['ansible_live'])} s"
        )
        by_time = sorted(
            range(len(measured["rollout"])), key=lambda i: measured["rollout"][i]["seconds"]
        )
        print(cpu_floor(measured))
        print("\n".join(measured["explained"][by_time[len(by_time) // 2]]))


def cpu_floor(measured):
    """What the run cost in CPU, and the soonest the machine's cores could have paid for it."""
    cores = os.cpu_count()
    cpu = statistics.median(run["cpu"] for run in measured["rollout"])
    seconds = statistics.median(run["seconds"] for run in measured["rollout"])
    single = statistics.median(measured["single"])
    clients = sum(len(batch) for batch in measured["batches"])
    return (
        f"CPU: the rollout took {cpu:.1f} core-seconds ({cpu / clients:.2f} per client, master "
        f"and apps included; {cpu / (cores * seconds):.0%} of the {cores} cores), one minion's "
        f"state.apply {statistics.median(measured['single_cpu']):.1f}; on {cores} cores that "
        f"rollout cannot end before {cpu / cores:.2f} s, {cpu / cores / single:.2f}x the "
        "single run, however it is scheduled"
    )


def targets_met(results):
    rows = report_rows(results)
    return all(row[-1] == "PASS" and row[-2] != "FAIL" for row in rows)


def main(argv=None):
    args = parse_args(argv)
    if not (BIN / "ansible-playbook").exists():
        say("bench: Ansible is not installed: make bench (or pip install -e '.[bench]') first")
        return 1
    # CI's scan step (bandit, the SBOM) is left out here, and publish warns about that each time.
    logging.getLogger("outpost.publish").setLevel(logging.ERROR)
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="outpost-bench-rollout-"))
    versions = run_versions(args.runs)
    results = {}
    try:
        releases, public = build_releases(
            work_dir, [FIRST_VERSION, *versions["rollout"], *versions["single"]]
        )
        for size in args.sizes:
            results[size] = measure_size(size, args, work_dir, releases, public)
    except BenchError as err:
        say(f"bench: {err}")
        return 1
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print_report(args, results)
    return 0 if targets_met(results) else 2


if __name__ == "__main__":
    sys.exit(main())
