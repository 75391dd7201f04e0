"""
Release events to clients: salt-api's webhook, the reactor, the runner, the orchestration, three
real minions each with its own supervisord.
"""

import base64
import contextlib
import csv
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

import outpost_audit
import outpost_registry
import outpost_webhook
from demo.supervisor import Supervisord
from tests.conftest import CLIENTS, WEBHOOK_SECRET, app_python, client_overrides, sync_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def salt_api(salt_master):
    factory = salt_master.salt_api_daemon()
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def clients(salt_master, salt_minion, short_root):
    """client-1 is the session's minion; client-2 and client-3 join it here."""
    started = {"client-1": salt_minion}
    with contextlib.ExitStack() as stack:
        for client in CLIENTS[1:]:
            supervisor = Supervisord(short_root / f"sv-{client}").start()
            stack.callback(supervisor.stop)
            root = short_root / f"outpost-{client}"
            factory = salt_master.salt_minion_daemon(
                client, overrides=client_overrides(root, supervisor)
            )
            stack.enter_context(factory.started())
            sync_client(factory)
            started[client] = factory
        yield started


@pytest.fixture(scope="module")
def rollout_pillar(pillar_tree, app_ports, clients):
    """The app settings of each client (its own ports); releases come from the registry."""
    apps = {}
    for client in CLIENTS:
        apps[client] = {
            "hello": {
                "python": app_python(),
                "port": app_ports[client]["hello"],
                "health_timeout": 8,
            },
            "slowpoke": {
                "python": app_python(),
                "port": app_ports[client]["slowpoke"],
                "health_timeout": 25,
            },
        }
    template = (
        "{% set apps = " + json.dumps(apps) + " %}\n"
        "outpost:\n  apps: {{ apps.get(grains['id'], {}) | json }}\n"
    )
    (pillar_tree / "outpost_apps.sls").write_text(template)
    (pillar_tree / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["outpost_apps"]}}))
    for factory in clients.values():
        factory.salt_call_cli().run("saltutil.refresh_pillar", "wait=True")
    yield apps
    (pillar_tree / "top.sls").write_text("base: {}\n")


@pytest.fixture(scope="module")
def registry(short_root, salt_master):
    return outpost_registry.Registry(driver="sqlite", path=str(short_root / "registry.sqlite"))


@pytest.fixture
def announce(api_port, signing_key, hello_releases):
    """Sign and post a release announcement the way CI does; return the HTTP status."""
    return announcer(api_port, signing_key, hello_releases)


@pytest.fixture(scope="module")
def announce_once(api_port, signing_key, hello_releases):
    return announcer(api_port, signing_key, hello_releases)


def announcer(api_port, signing_key, hello_releases):

    def post(version, app="hello", secret=WEBHOOK_SECRET, stamp=None, edit=None, raw=None):
        release = hello_releases[version]
        manifest = {key: release[key] for key in ("name", "version", "sha256", "size")}
        manifest["app"] = app
        body = {
            "manifest": manifest,
            "signature": base64.b64encode(
                signing_key.sign(outpost_webhook.canonical_manifest(manifest))
            ).decode(),
            "artifact_url": release["source"],
        }
        if edit:
            edit(body)
        payload = raw if raw is not None else json.dumps(body).encode()
        stamp = int(time.time()) if stamp is None else stamp
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/hook/outpost/release",
            data=payload,
            headers={
                "Content-Type": "application/json",
                "X-Outpost-Timestamp": str(stamp),
                "X-Outpost-Signature": outpost_webhook.hmac_signature(secret, stamp, payload),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status

    return post


def wait_for_rollout(registry, app, version, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = [
            rollout
            for rollout in registry.rollouts(app, limit=50)
            if rollout["version"] == version and rollout["status"] in ("succeeded", "halted")
        ]
        if finished:
            return finished[0]
        time.sleep(0.5)
    raise AssertionError(f"the rollout of {app} {version} did not finish in {timeout}s")


def live(app_ports, client, app="hello"):
    try:
        url = f"http://127.0.0.1:{app_ports[client][app]}/healthz"
        with urllib.request.urlopen(url, timeout=3) as answer:
            return json.loads(answer.read())["version"]
    except (OSError, urllib.error.URLError):
        return None


def client_journal(short_root, outpost_root, client, app="hello"):
    root = outpost_root if client == "client-1" else short_root / f"outpost-{client}"
    path = pathlib.Path(root, "apps", app, "journal.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def ready(salt_api, clients, rollout_pillar):
    return clients


@pytest.fixture(scope="module")
def demo_story(ready, announce_once, registry, app_ports):
    """The demo's three releases: 1.0.0 and 1.1.0 reach every client, 1.2.0 halts at the canary.
    Returns each release's finished rollout."""
    finished = {}
    for version in ("1.0.0", "1.1.0"):
        assert announce_once(version) == 200
        done = wait_for_rollout(registry, "hello", version)
        assert done["status"] == "succeeded", done
        assert {client: live(app_ports, client) for client in CLIENTS} == dict.fromkeys(
            CLIENTS, version
        )
        finished[version] = done
    assert announce_once("1.2.0") == 200
    finished["1.2.0"] = wait_for_rollout(registry, "hello", "1.2.0")
    return finished


def test_releases_roll_out_and_a_broken_one_halts_at_the_canary(
    demo_story, registry, app_ports, short_root, outpost_root
):
    halted = demo_story["1.2.0"]

    assert halted["status"] == "halted", halted
    assert halted["reason"] == "canary: client-1 did not go live on 1.2.0"
    assert {client: live(app_ports, client) for client in CLIENTS} == dict.fromkeys(
        CLIENTS, "1.1.0"
    )
    assert registry.desired("hello") == dict.fromkeys(CLIENTS, "1.1.0")
    canary, *others = CLIENTS
    assert registry.moved_in_rollout(halted["id"]) == {canary: "1.1.0"}
    assert any(
        entry["version"] == "1.2.0" for entry in client_journal(short_root, outpost_root, canary)
    )
    for client in others:
        assert not any(
            entry["version"] == "1.2.0"
            for entry in client_journal(short_root, outpost_root, client)
        ), f"{client} was touched"


def _bad_requests():
    """Each bad request, and the field its refusal must name."""

    def edit_manifest(**fields):
        def apply(body):
            body["manifest"].update(fields)

        return apply

    return {
        "wrong hmac": ({"secret": "not-the-secret"}, "X-Outpost-Signature"),
        "replayed": ({"stamp": int(time.time()) - 600}, "old"),
        "bad signature": ({"edit": lambda b: b.update(signature="AAAA")}, "signature"),
        "newline in version": ({"edit": edit_manifest(version="1.0.0\nrm")}, "manifest.version"),
        "template braces": ({"edit": edit_manifest(version="{{ 7*7 }}")}, "manifest.version"),
        "sha256 not hex": ({"edit": edit_manifest(sha256="z" * 64)}, "manifest.sha256"),
        "artifact off allowlist": (
            {"edit": lambda b: b.update(artifact_url="https://evil.example/hello.pyz")},
            "artifact_url",
        ),
        "names targets": ({"edit": lambda b: b.update(tgt="*")}, "targets"),
    }


@pytest.mark.parametrize("case", sorted(_bad_requests()))
def test_bad_requests_are_refused_with_a_security_event_and_no_job(
    case, ready, announce, registry, event_listener, salt_master
):
    options, field = _bad_requests()[case]
    rollouts_before = registry.rollouts(limit=1000)
    start = time.time()

    assert announce("1.0.0", **options) == 200

    refused = event_listener.wait_for_events(
        [(salt_master.id, "outpost/security/release-refused")], timeout=60, after_time=start
    )
    assert refused.found_all_events, case
    (event,) = refused.matches
    assert field in event.data["reason"]
    assert registry.rollouts(limit=1000) == rollouts_before
    jobs = event_listener.get_events([(salt_master.id, "salt/job/*/new")], after_time=start)
    assert not [job for job in jobs if job.data.get("fun") != "saltutil.find_job"]


def audit_records(audit_dir, until_tag, timeout=60):
    """The trail's records once the record tagged ``until_tag`` is in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = outpost_audit.Trail(audit_dir / "trail.jsonl").records()
        if any(entry.get("tag") == until_tag for entry in records):
            return records
        time.sleep(0.5)
    raise AssertionError(f"{until_tag} did not reach the audit trail in {timeout}s")


def outpost_cli(*args):
    done = subprocess.run(
        [sys.executable, "-m", "outpost", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done


def test_the_audit_report_tells_the_demo_story(demo_story, audit_dir, tmp_path):
    """Placed after the bad requests, so that their refusals are in the trail too."""
    audit_records(audit_dir, "outpost/release/hello/1.2.0/halted")
    trail = audit_dir / "trail.jsonl"
    assert WEBHOOK_SECRET not in trail.read_text()

    verified = outpost_cli("audit", "verify", "--trail", trail)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    csv_out = outpost_cli("audit", "report", "--trail", trail, "--app", "hello", "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    went_live = {
        (row["minion"], row["release"], row["result"])
        for row in rows
        if row["kind"] == "job" and row["release"] and row["function"].startswith("state.")
    }
    for client in CLIENTS:
        assert (client, "1.0.0", "True") in went_live, client
        assert (client, "1.1.0", "True") in went_live, client
    assert ("client-1", "1.2.0", "False") in went_live
    assert not [row for row in went_live if row[0] != "client-1" and row[1] == "1.2.0"]
    assert any(row["tag"] == "outpost/release/hello/1.1.0/succeeded" for row in rows)

    text = outpost_cli("audit", "report", "--trail", trail, "--client", "client-2")
    assert text.returncode == 0, text.stderr
    assert "client-2:" in text.stdout
    assert "client-1:" not in text.stdout
    assert "headers: X-Outpost-Signature does not match the body" in text.stdout

    page = tmp_path / "report.html"
    made = outpost_cli("audit", "report", "--trail", trail, "--format", "html", "--out", page)
    assert made.returncode == 0, made.stderr
    dom, screenshot = open_in_chromium(page, tmp_path / "report.png")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rollback_rows = re.findall(r'<tr class="rollback"[^>]*>(.*?)</tr>', dom, re.S)
    (halt,) = [row for row in rollback_rows if "1.2.0" in row]
    assert "client-1" in halt
    assert "canary: client-1 did not go live on 1.2.0" in halt
    refused_rows = re.findall(r'<tr class="refused"[^>]*>(.*?)</tr>', dom, re.S)
    assert any("X-Outpost-Signature does not match the body" in row for row in refused_rows)


def open_in_chromium(page, screenshot):
    """Debian's chromium, headless: the page's DOM after it rendered, and a screenshot."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed: make test installs Debian's package")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    common += [f"--user-data-dir={screenshot.parent / 'chromium-profile'}"]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1280,2400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom, screenshot


def test_a_client_that_never_returns_fails_the_rollout(
    ready, signing_key, api_port, hello_releases, registry, app_ports, announce
):
    """slowpoke's clients have 6 s to return a state that takes 25 s to give up on 1.2.0."""
    assert announce("1.2.0", app="slowpoke") == 200

    halted = wait_for_rollout(registry, "slowpoke", "1.2.0")

    assert halted["status"] == "halted", halted
    assert "client-2" not in registry.moved_in_rollout(halted["id"])
    assert live(app_ports, "client-2", "slowpoke") is None


def test_an_offline_client_converges_when_it_comes_back(
    ready, announce, registry, app_ports, event_listener, salt_master
):
    offline = ready["client-3"]
    offline.terminate()
    start = time.time()
    try:
        assert announce("1.3.0") == 200
        done = wait_for_rollout(registry, "hello", "1.3.0")
        assert done["status"] == "succeeded", done
        assert done["counts"]["pending"] == 1
        assert registry.desired("hello")["client-3"] == "1.3.0"
        assert live(app_ports, "client-3") == "1.1.0"
    finally:
        offline.start()

    deadline = time.monotonic() + 90
    while live(app_ports, "client-3") != "1.3.0" and time.monotonic() < deadline:
        time.sleep(1)
    assert live(app_ports, "client-3") == "1.3.0"
    phases = [
        f"outpost/release/hello/1.3.0/{phase}"
        for phase in ("planned", "canary", "gate", "batch-1", "succeeded")
    ]
    progress = event_listener.get_events([(salt_master.id, tag) for tag in phases], start)
    assert {event.tag for event in progress} == set(phases)


def test_status_shows_rollouts_and_clients_as_a_table(ready, salt_master, registry):
    ret = salt_master.salt_run_cli(timeout=60).run("outpost_release.status", "hello")

    assert ret.returncode == 0
    text = ret.stdout
    for word in ("rollout", "status", "halted", "succeeded"):
        assert word in text
    assert "client-3" in text
