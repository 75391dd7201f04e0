"""
Two masters serving the same three clients (Salt's multi-master, both hot), the release registry
and the job cache on one real PostgreSQL, the same master key pair on both. Both masters hear every
announcement and every minion start; each is acted on once. The master running a rollout is
stopped right after its canary passed, and the other master finishes the rollout.
"""

import base64
import contextlib
import json
import shutil
import time

import psycopg2
import pytest
import salt.utils.event
import yaml

import outpost_audit
import outpost_registry
import outpost_webhook
from demo.lab import link_master_extensions, outpost_master_settings
from demo.supervisor import Supervisord
from tests.conftest import (
    REPO,
    WEBHOOK_SECRET,
    app_python,
    free_port,
    public_key_b64,
)

pytestmark = pytest.mark.slow

EDGES = ("edge-1", "edge-2", "edge-3")
MASTERS = ("outpost-m1", "outpost-m2")
# Short so the test waits seconds, not minutes: renewed every 2 s, lost after 8 s.
LEASE = {"lease": 8, "renew_every": 2, "takeover": "resume"}


@pytest.fixture(scope="module")
def shared_registry(postgres):
    """The registry database both masters use."""
    return {"driver": "postgres", "dsn": postgres.dsn_for(postgres.create_database())}


@pytest.fixture(scope="module")
def edge_ports():
    return {client: free_port() for client in EDGES}


@pytest.fixture(scope="module")
def edge_pillar(short_root, edge_ports):
    """One pillar tree both masters serve: each client's app settings (its own port)."""
    tree = short_root / "pillar-masters"
    tree.mkdir()
    apps = {
        client: {"hello": {"python": app_python(), "port": port, "health_timeout": 10}}
        for client, port in edge_ports.items()
    }
    (tree / "edges.sls").write_text(
        "{% set apps = " + json.dumps(apps) + " %}\n"
        "outpost:\n  apps: {{ apps.get(grains['id'], {}) | json }}\n"
    )
    (tree / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["edges"]}}))
    return tree


def master_overrides(name, short_root, ext_tree, pillar, signing_key, registry, job_cache):
    """The same outpost configuration on both masters; only the audit folder is each one's."""
    apps = {"hello": {"clients": list(EDGES), "canary": 1, "batch": 1, "soak": 0}}
    settings = outpost_master_settings(
        free_port(),
        WEBHOOK_SECRET,
        [public_key_b64(signing_key)],
        None,
        apps,
        audit_dir=short_root / f"audit-{name}",
        masters=dict(LEASE),
        registry=registry,
    )
    settings.pop("rest_cherrypy")
    return {
        "file_roots": {"base": [str(REPO / "salt"), str(ext_tree)]},
        "pillar_roots": {"base": [str(pillar)]},
        "fileserver_followsymlinks": True,
        "extension_modules": "extmods",
        **settings,
        **job_cache,
        "log_level_logfile": "info",
        # Both masters must know each client's key; here they take whatever key they see.
        "auto_accept": True,
    }


@pytest.fixture(scope="module")
def masters(
    salt_factories,
    short_root,
    ext_tree,
    edge_pillar,
    signing_key,
    shared_registry,
    job_cache,
    hello_releases,
):
    """Both masters, started with one key pair: the first master's, copied to the second."""
    if not job_cache:
        pytest.skip("the shared job cache needs PostgreSQL")
    factories = {}
    with contextlib.ExitStack() as stack:
        for name in MASTERS:
            overrides = master_overrides(
                name, short_root, ext_tree, edge_pillar, signing_key, shared_registry, job_cache
            )
            factory = salt_factories.salt_master_daemon(name, overrides=overrides)
            link_master_extensions(factory.config["extension_modules"])
            if factories:
                first = factories[MASTERS[0]].config["pki_dir"]
                for key in ("master.pem", "master.pub"):
                    shutil.copy(f"{first}/{key}", f"{factory.config['pki_dir']}/{key}")
            stack.enter_context(factory.started())
            factories[name] = factory
        yield factories


@pytest.fixture(scope="module")
def edges(masters, short_root):
    """Three clients, each configured with both masters and a supervisord of its own."""
    first, second = (masters[name] for name in MASTERS)
    both = [f"127.0.0.1:{master.config['ret_port']}" for master in (first, second)]
    started = {}
    with contextlib.ExitStack() as stack:
        for client in EDGES:
            supervisor = Supervisord(short_root / f"sv-{client}").start()
            stack.callback(supervisor.stop)
            overrides = {
                "master": both,
                # 4506, Salt's default: each master then tells the client its own publish port.
                "publish_port": 4506,
                "outpost": {
                    "root": str(short_root / f"outpost-{client}"),
                    "supervisor": supervisor.minion_config(),
                },
                "log_level_logfile": "info",
            }
            factory = first.salt_minion_daemon(client, overrides=overrides)
            stack.enter_context(factory.started())
            started[client] = factory
        for master in (first, second):
            wait_for(lambda master=master: answering(master) == set(EDGES), 60, "both masters")
        synced = first.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt="edge-*")
        assert synced.returncode == 0, synced
        yield started


def answering(master):
    ret = master.salt_cli(timeout=10).run("test.ping", minion_tgt="edge-*")
    return {client for client, answer in (ret.data or {}).items() if answer is True}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s")


def announcement(signing_key, release):
    """The event salt-api's webhook puts on a master's bus for CI's announcement."""
    manifest = {key: release[key] for key in ("name", "version", "sha256", "size")}
    manifest["app"] = "hello"
    signature = signing_key.sign(outpost_webhook.canonical_manifest(manifest))
    body = json.dumps(
        {
            "manifest": manifest,
            "signature": base64.b64encode(signature).decode(),
            "artifact_url": release["source"],
        }
    )
    stamp = int(time.time())
    headers = {
        "X-Outpost-Timestamp": str(stamp),
        "X-Outpost-Signature": outpost_webhook.hmac_signature(WEBHOOK_SECRET, stamp, body),
    }
    return {"body": body, "headers": headers}


def fire(master, tag, data):
    config = master.config
    with salt.utils.event.get_master_event(config, config["sock_dir"], listen=False) as bus:
        bus.fire_event(data, tag)


def job_returns(job_cache):
    """``(minion, function, jid)`` of every return in the shared job cache."""
    connection = psycopg2.connect(
        host=job_cache["returner.pgjsonb.host"],
        port=job_cache["returner.pgjsonb.port"],
        dbname=job_cache["returner.pgjsonb.db"],
        user=job_cache["returner.pgjsonb.user"],
        password=job_cache["returner.pgjsonb.pass"],
    )
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute("SELECT id, fun, jid FROM salt_returns ORDER BY alter_time")
        return cursor.fetchall()


def state_apply_jobs(job_cache, client):
    """The ``state.apply`` jobs one client returned (Salt may store a return more than once)."""
    returned = job_returns(job_cache)
    return sorted(
        {jid for minion, fun, jid in returned if (minion, fun) == (client, "state.apply")}
    )


def phases(short_root, version):
    """Every rollout phase of ``version`` in both masters' audit trails, oldest first."""
    found = []
    for name in MASTERS:
        trail = outpost_audit.Trail(short_root / f"audit-{name}" / "trail.jsonl")
        assert outpost_audit.verify(trail.records())["ok"], name
        found += [
            (entry["time"], entry["function"], name)
            for entry in trail.records()
            if entry.get("app") == "hello" and entry.get("release") == version
        ]
    return [(function, name) for _, function, name in sorted(found)]


def announced(short_root, master, version, phase):
    """Whether ``master``'s trail holds the phase yet; a line still being written is skipped."""
    path = short_root / f"audit-{master}" / "trail.jsonl"
    if not path.exists():
        return False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("release") == version and entry.get("function") == f"rollout {phase}":
            return True
    return False


def test_each_minion_start_is_converged_by_one_master(edges, shared_registry, job_cache):
    """Both masters hear each client's start; only the one that claimed it applies the state."""
    registry = outpost_registry.Registry(**shared_registry)

    owners = {client: registry.claim_owner(f"converge:{client}") for client in EDGES}
    jobs = wait_for(
        lambda: (
            {client: state_apply_jobs(job_cache, client) for client in EDGES}
            if all(state_apply_jobs(job_cache, client) for client in EDGES)
            else None
        ),
        30,
        "a converge job for every client",
    )

    assert set(owners.values()) <= set(MASTERS)
    assert None not in owners.values()
    assert {client: len(found) for client, found in jobs.items()} == dict.fromkeys(EDGES, 1)


def test_a_rollout_survives_losing_its_master_after_the_canary(
    edges, masters, shared_registry, signing_key, hello_releases, short_root
):
    registry = outpost_registry.Registry(**shared_registry)
    event = announcement(signing_key, hello_releases["1.0.0"])

    # CI's announcement reaches both masters (as through two salt-api endpoints).
    for master in masters.values():
        fire(master, "salt/netapi/hook/outpost/release", event)
    rollout = wait_for(lambda: registry.rollouts("hello"), 30, "the rollout")[0]
    lease = wait_for(
        lambda: (found := registry.lease(rollout["id"])) and found["batches_done"] >= 1 and found,
        180,
        "the canary through its gate",
    )
    owner = lease["owner"]
    # Stopped while batch 1 applies: a master stopped between claiming a batch's announcement and
    # the event reaching its trail leaves that batch out of both trails (README, known limits).
    wait_for(lambda: announced(short_root, owner, "1.0.0", "batch-1"), 60, "batch 1 in the trail")
    masters[owner].terminate()
    survivor = next(name for name in MASTERS if name != owner)

    done = wait_for(
        lambda: (found := registry.rollout(rollout["id"]))["status"] != "running" and found,
        240,
        "the rollout finished by the other master",
    )
    assert done["status"] == "succeeded", done
    assert [found["version"] for found in registry.rollouts("hello")] == ["1.0.0"]
    assert registry.lease(rollout["id"])["owner"] == survivor
    assert registry.desired("hello") == dict.fromkeys(EDGES, "1.0.0")

    history = registry.history(rollout_id=rollout["id"])
    promoted = [entry["client"] for entry in history if entry["event"] == "promote"]
    assert promoted == list(EDGES)
    (takeover,) = [entry for entry in history if entry["event"] == "takeover"]
    assert takeover["reason"] == f"{survivor} took over from {owner}: its lease ran out"

    health = (
        masters[survivor]
        .salt_cli(timeout=60)
        .run("shiv_app.check_health", "hello", minion_tgt="edge-*")
    )
    assert {client: health.data[client]["version"] for client in EDGES} == dict.fromkeys(
        EDGES, "1.0.0"
    )
    assert all(health.data[client]["healthy"] for client in EDGES)

    # One story across both audit trails: each phase once, the canary by the owner, the rest
    # after the takeover by the survivor.
    story = phases(short_root, "1.0.0")
    names = [function for function, _ in story]
    for phase in ("canary", "batch-1", "batch-2", "takeover", "succeeded"):
        assert names.count(f"rollout {phase}") == 1, story
    assert ("rollout canary", owner) in story
    assert ("rollout batch-2", survivor) in story
    assert ("rollout succeeded", survivor) in story
    assert names.index("rollout canary") < names.index("rollout takeover")
    assert names.index("rollout takeover") < names.index("rollout succeeded")
