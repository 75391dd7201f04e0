"""
`make demo`: the main job of outpost on this machine, start to end.

A salt-master with salt-api and three clients start under .demo/. CI's own script
(ci/release.sh: build, scan, sign, publish, notify) ships hello 1.0.0, then 1.1.0, then a broken
1.2.0 whose /healthz answers 503. Each announcement reaches the master through salt-api's webhook;
the reactor hands it to the rollout: a canary, a health gate, then the rest one by one. 1.0.0 and
1.1.0 reach every client; 1.2.0 fails at the canary, the rollout halts, the canary goes back to
1.1.0 and the other clients are never touched.
"""

import json
import os
import pathlib
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

from demo.lab import REPO, Lab, free_port
from tests.support.apps import hello_source

CLIENTS = ("client-1", "client-2", "client-3")
APP = "hello"
STORY = (("1.0.0", True), ("1.1.0", True), ("1.2.0", False))
OUTPOST = pathlib.Path(sys.executable).parent / "outpost"


def make_signing_key(work):
    """A fresh Ed25519 key pair, as `outpost release keygen` makes it for CI."""
    private, public = work / "signing.pem", work / "signing.pub"
    subprocess.run(
        [str(OUTPOST), "release", "keygen", "--private", str(private), "--public", str(public)],
        check=True,
        capture_output=True,
    )
    return private.read_text(), public.read_text().strip()


def client_pillar(lab, ports):
    """Each client's app settings; which release it runs comes from the registry. Its secret
    comes from the embedded default of outpost_vault: a local file, for demos only."""
    secret_key = {"vault": {"mount": "secret", "path": "clients/{minion_id}/hello", "key": "key"}}
    settings = {
        client: {
            APP: {
                "python": "/usr/bin/python3",
                "port": ports[client],
                "health_timeout": 8,
                "env": {"SECRET_KEY": secret_key},
            }
        }
        for client in CLIENTS
    }
    lab.write_secrets(
        {"secret": {f"clients/{c}/hello": {"key": secrets.token_hex(16)} for c in CLIENTS}}
    )
    template = (
        "{% set apps = " + json.dumps(settings) + " %}\n"
        "outpost:\n  apps: {{ apps.get(grains['id'], {}) | json }}\n"
    )
    (lab.pillar_dir / "outpost_apps.sls").write_text(template)
    (lab.pillar_dir / "top.sls").write_text("base:\n  '*':\n    - outpost_apps\n")
    lab.salt("*", "saltutil.refresh_pillar", "wait=True")


def ship(lab, work, version, healthy, key):
    """What the release workflow runs on a tag, here on this machine."""
    source = hello_source(work, version, healthy=healthy)
    env = dict(
        os.environ,
        PATH=f"{OUTPOST.parent}:{os.environ['PATH']}",
        OUTPOST_APP_SOURCE=str(source),
        OUTPOST_APP=APP,
        OUTPOST_OUT=str(work / f"dist-{version}"),
        OUTPOST_SIGNING_KEY=key,
        OUTPOST_PUBLISH_ROOT=str(lab.releases_dir),
        OUTPOST_HOOK_URL=lab.hook_url,
        OUTPOST_WEBHOOK_SECRET=lab.secret,
    )
    done = subprocess.run(
        ["/bin/bash", str(REPO / "ci" / "release.sh"), "all"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"ci/release.sh failed:\n{done.stdout}\n{done.stderr}")


def wait_for_rollout(lab, version, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rollout in lab.runner("outpost_release.rollouts", APP) or []:
            if rollout["version"] == version and rollout["status"] in ("succeeded", "halted"):
                return rollout["status"]
        time.sleep(1)
    return "did not finish"


def live_version(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return json.loads(answer.read())["version"]
    except OSError:
        return "-"


def print_table(rows):
    headers = ("release", "rollout", *CLIENTS)
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    print()
    for row in (headers, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def run_story(lab, work, key, ports):
    rows = []
    for version, healthy in STORY:
        label = version if healthy else f"{version} (broken)"
        print(f"CI ships hello {label}: build, scan, sign, publish, notify ...", flush=True)
        ship(lab, work, version, healthy, key)
        outcome = wait_for_rollout(lab, version)
        rows.append((label, outcome, *(live_version(ports[client]) for client in CLIENTS)))
    return rows


def print_audit(lab):
    """What an auditor sees afterwards: the trail checked, and the report's rollbacks."""
    trail = lab.audit_dir / "trail.jsonl"
    for action in (["verify"], ["report", "--app", APP]):
        done = subprocess.run(
            [str(OUTPOST), "audit", *action, "--trail", str(trail)],
            capture_output=True,
            text=True,
        )
        print(f"\noutpost audit {' '.join(action)}\n" + (done.stdout or done.stderr).rstrip())
    page = lab.base / "audit-report.html"
    subprocess.run(
        [str(OUTPOST), "audit", "report", "--trail", str(trail), "--format", "html"]
        + ["--out", str(page)],
        capture_output=True,
    )
    print(f"\nthe same report as a web page: {page}")


def main():
    # The folder holds the demo's private signing key: it goes when the demo ends, however.
    with tempfile.TemporaryDirectory(prefix="outpost-demo-") as work:
        return run_demo(pathlib.Path(work))


def run_demo(work):
    key, public = make_signing_key(work)
    apps = {APP: {"clients": list(CLIENTS), "canary": 1, "batch": 1, "soak": 0}}
    ports = {client: free_port() for client in CLIENTS}
    lab = Lab(minions=CLIENTS, apps=apps, signing_keys=[public], secret=secrets.token_hex(16))
    print("starting a salt-master, salt-api and three clients (each with supervisord) ...")
    with lab:
        client_pillar(lab, ports)
        rows = run_story(lab, work, key, ports)
        status = lab.runner_text("outpost_release.status", APP)
        lab.salt("*", "shiv_app.remove_app", APP)

    print_table(rows)
    print("\nsalt-run outpost_release.status hello\n" + status)
    print_audit(lab)
    wanted = [
        ("1.0.0", "succeeded", "1.0.0", "1.0.0", "1.0.0"),
        ("1.1.0", "succeeded", "1.1.0", "1.1.0", "1.1.0"),
        ("1.2.0 (broken)", "halted", "1.1.0", "1.1.0", "1.1.0"),
    ]
    if rows != wanted:
        print("\nunexpected outcome; the logs are under .demo/var/")
        return 1
    print("\ndemo finished: the broken release stopped at the canary, which is back on 1.1.0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
