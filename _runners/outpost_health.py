"""
Repair what the clients' ``app_health`` beacons report, the way an experienced operator would:
one step at a time, never two at once, never without end.

For an unhealthy app the runner decides, in order:

1. restart the service, unless a restart was already tried within the window, and have the
   client watch it for ``settle`` seconds;
2. if still unhealthy and the live release went live within the window, roll back to the previous
   release (and point the registry at it, so the next highstate does not undo the rollback);
3. otherwise raise an alert for a person.

At most one remediation runs per client and app (claimed in the registry, so several masters act
once); repeats of the same event while it runs, or the very same event again, are merged: logged,
announced, not acted on. A client gets at most ``max_actions`` actions per window; past that,
only alerts.

Beacon events are untrusted: a minion chooses their tag and data, so it could name another
client. The client in a tag must be one plain minion id, every call targets it as a list, and
before a restart or rollback the runner asks the client itself for its health: a healthy client
is left alone (decision ``not-confirmed``), and an app removed from it meanwhile is let go
(decision ``gone``).

Every decision is an event ``outpost/remediation/<client>/<app>/<decision>`` with its reason;
alerts also go to ``outpost/alert/<client>/<app>``. Lost heartbeats raise
``outpost/client/<client>/missing`` once (``check_heartbeats``, on the master's schedule).

Master configuration::

    outpost:
      health:
        window: 600          # seconds: how far back "recently" reaches
        settle: 10           # seconds a restarted app must stay healthy to count as repaired
        max_actions: 3       # actions per client per window before only alerts
        missing_after: 900   # seconds without a heartbeat before a client is missing
    schedule:
      outpost-heartbeats:
        function: outpost_health.check_heartbeats
        seconds: 60
"""

import datetime
import hashlib
import json
import logging
import re
import time

import salt.cache
import salt.client

import outpost_events
import outpost_ids
import outpost_registry
import outpost_release

log = logging.getLogger(__name__)

__virtualname__ = "outpost_health"

DEFAULTS = {
    "window": 600,
    "max_actions": 3,
    "missing_after": 900,
    "action_timeout": 120,
    "settle": 10,
}
# Remediation keeps its books per client and app; the tunnel connector goes under this name.
TUNNEL = "cloudflared"
# What is tried, in order, before a person is alerted.
APP_STEPS = ("restart", "rollback")
TUNNEL_STEPS = ("restart",)
# The longest remediation: confirm, restart (and settle), status, rollback, and one to spare.
CALLS = 5
MARGIN = 60
# Seconds between asking a client whether a change of the app is done.
CHANGING_POLL = 0.5
# Bounds on what one heartbeat stores.
MAX_HEARTBEAT_APPS = 50
SHORT_TEXT = 64
# How Salt words an exception on the client; the reasons read better without it.
ERROR_PREFIX = re.compile(r"^ERROR( executing '[^']*')?: ")


def __virtual__():
    return __virtualname__


def _settings():
    return dict(DEFAULTS, **((__opts__.get("outpost") or {}).get("health") or {}))


def _registry():
    return outpost_registry.Registry.from_opts(__opts__)


def _emit(tag, data):
    outpost_events.fire(__opts__, tag, data)


def _local():
    return salt.client.get_local_client(__opts__["conf_file"])


def _iso_ago(seconds):
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds")


# -- events from the beacon ---------------------------------------------------------------------


def handle(tag, data):
    """
    Act on one ``app_health`` or ``tunnel_health`` beacon event; the reactor calls this.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_health.handle salt/beacon/client-1/app_health/hello/unhealthy '{...}'
    """
    parts = str(tag).split("/")
    if len(parts) < 5 or parts[:2] != ["salt", "beacon"]:
        return {"ignored": f"not a beacon event: {tag}"}
    client = parts[2]
    if not outpost_ids.is_minion_id(client):
        log.warning("ignored %s: %r is not one plain minion id", tag, client)
        return {"ignored": f"not one plain minion id: {client!r}"}
    payload = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(payload, dict):
        return {"ignored": f"{tag}: its data is not a mapping"}
    if parts[3] == "tunnel_health":
        return _tunnel_event(client, parts[4], payload)
    if parts[3] != "app_health":
        return {"ignored": f"not an outpost health beacon event: {tag}"}
    if parts[4] == "heartbeat" and len(parts) == 5:
        return heartbeat(client, payload.get("apps") or {})
    problem = outpost_release.app_name_problem(parts[4])
    if problem:
        log.warning("ignored %s: the app %r %s", tag, parts[4], problem)
        return {"ignored": f"{tag}: the app {problem}"}
    if len(parts) == 6 and parts[5] == "unhealthy":
        return _heard_before(tag, payload, client, parts[4]) or remediate(
            client, parts[4], payload.get("reason", "unhealthy")
        )
    if len(parts) == 6 and parts[5] == "healthy":
        log.info("%s on %s is healthy again", parts[4], client)
        _emit(f"outpost/remediation/{client}/{parts[4]}/recovered", {"time": time.time()})
        return {"recovered": parts[4]}
    return {"ignored": f"unknown app_health event: {tag}"}


def _heard_before(tag, payload, client, app):
    """Every master hears each beacon event, and the same event may come again (a replay, a
    flood): the first claim of it acts. Why not to act on this one, or None."""
    key = f"event:{tag}:{_fingerprint(payload)}"
    registry, me = _registry(), str(__opts__["id"])
    if registry.claim(key, me, float(_settings()["window"])):
        return None
    if registry.claim_owner(key) != me:
        log.debug("%s is handled by another master", tag)
        return {"decision": "heard by another master"}
    log.info("merged a repeat of %s unhealthy on %s: the same event again", app, client)
    _decided(client, app, "merged", "the same event was handled already")
    return {"decision": "merged"}


def _fingerprint(payload):
    """One event's identity: its data without Salt's own per-delivery keys (``_stamp``)."""
    own = {key: value for key, value in payload.items() if not str(key).startswith("_")}
    text = json.dumps(own, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _tunnel_event(client, status, payload):
    if status == "unhealthy":
        tag = f"salt/beacon/{client}/tunnel_health/unhealthy"
        return _heard_before(tag, payload, client, TUNNEL) or remediate(
            client, TUNNEL, payload.get("reason", "not ready")
        )
    if status == "healthy":
        log.info("the tunnel connector on %s is ready again", client)
        _emit(f"outpost/remediation/{client}/{TUNNEL}/recovered", {"time": time.time()})
        return {"recovered": TUNNEL}
    return {"ignored": f"unknown tunnel_health event: {status}"}


def heartbeat(client, apps):
    """Record that a client is alive; a client that was missing is announced as back."""
    # Salt does not authenticate event data on the minion's events path: any minion can forge
    # another's heartbeat and keep a dead client looking alive. Actions confirm with the client.
    if not _has_accepted_key(client):
        log.warning("ignored a heartbeat of %s, which has no accepted key", client)
        return {"ignored": f"{client} has no accepted key on this master"}
    was_missing = _registry().record_heartbeat(client, _app_summary(apps), time.time())
    if was_missing:
        log.info("client %s is back after missing heartbeats", client)
        _emit(f"outpost/client/{client}/back", {"time": time.time()})
    return {"alive": client}


def _has_accepted_key(client):
    """One lookup in Salt's key store (whatever ``keys.cache_driver``), not a listing of every
    key: heartbeats arrive from every client all the time."""
    keys = salt.cache.Cache(__opts__, driver=__opts__.get("keys.cache_driver", "localfs_key"))
    entry = keys.fetch("keys", client)
    return isinstance(entry, dict) and entry.get("state") == "accepted"


def _app_summary(apps):
    """What a heartbeat may store of its apps: named apps, a short word for release and status
    each, and no more apps than a client could run; a forged one cannot fill the registry."""
    if not isinstance(apps, dict):
        return {}
    named = sorted(
        (app, state)
        for app, state in apps.items()
        if isinstance(state, dict) and not outpost_release.app_name_problem(app)
    )
    return {
        app: {key: _short(state.get(key)) for key in ("release", "status")}
        for app, state in named[:MAX_HEARTBEAT_APPS]
    }


def _short(value):
    return None if value is None else str(value)[:SHORT_TEXT]


def check_heartbeats():
    """
    Announce clients whose heartbeats stopped: ``outpost/client/<client>/missing``, once each.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_health.check_heartbeats
    """
    now = time.time()
    missing = _registry().newly_missing(now - float(_settings()["missing_after"]), now)
    for client, last_seen in missing.items():
        log.warning("client %s sent no heartbeat for %.0f s", client, now - last_seen)
        _emit(f"outpost/client/{client}/missing", {"last_seen": last_seen, "time": now})
    return sorted(missing)


# -- remediation --------------------------------------------------------------------------------


def remediate(client, app, reason):
    """
    Repair one unhealthy app on one client: restart, roll back, or alert (see the module doc).
    ``app`` ``cloudflared`` is the tunnel connector: restart it, or alert.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_health.remediate client-1 hello reason="health check failed"
    """
    outpost_ids.check_minion_id(client)
    if app != TUNNEL:
        outpost_release.validate_app_name(app)
    registry = _registry()
    claimed = registry.claim_remediation(client, app, abandon_after=_abandon_after())
    if claimed is None:
        log.info("merged a repeat of %s unhealthy on %s: a remediation is under way", app, client)
        _decided(client, app, "merged", "a remediation of this app is already under way")
        return {"decision": "merged"}

    decision, why = _decide(registry, client, app, reason)
    result = "not attempted"
    try:
        status = _client_status(client, app)
        if not isinstance(status, dict):
            decision, why, result = _alert(
                client, app, f"{reason}; the client could not say how the app is: {status}"
            )
        elif status.get("changing"):
            decision, why, result = _alert(
                client, app, f"{reason}; a change of the app has held its lock for too long"
            )
        elif status.get("healthy"):
            decision, why, result = (
                "not-confirmed",
                f"reported {reason!r}",
                "the client answers healthy",
            )
            log.warning("%s on %s was reported %r, but answers healthy", app, client, reason)
        else:
            decision, why, result = _carry_out(registry, client, app, decision, why, status)
    finally:
        registry.finish_remediation(claimed, decision, why, result)
    _decided(client, app, decision, why, result=result)
    return {"decision": decision, "reason": why, "result": result}


def _abandon_after():
    """A remediation claim older than this was left by a master that stopped mid-way. The longest
    remediation makes ``CALLS`` client calls of at most ``action_timeout`` and settles once."""
    settings = _settings()
    return CALLS * float(settings["action_timeout"]) + float(settings["settle"]) + MARGIN


def _client_status(client, app):
    """The client's own word on the app (or connector): the event that started the remediation
    may come from another minion. For an app it also names the live release and since when."""
    if app == TUNNEL:
        return _call(client, "cloudflared.check_ready")
    # A switch, restart or rollback under way ends healthy or puts the previous release back
    # itself, and the beacon will not send this event again: judge the app once it is done.
    deadline = time.monotonic() + float(_settings()["action_timeout"])
    while True:
        status = _call(client, "shiv_app.get_status", app, quick=True)
        changing = isinstance(status, dict) and status.get("changing")
        if not changing or time.monotonic() >= deadline:
            return status
        time.sleep(CHANGING_POLL)


def _decide(registry, client, app, reason):
    settings = _settings()
    since = _iso_ago(float(settings["window"]))
    acted = [
        entry
        for entry in registry.remediations(client, since)
        if entry["decision"] in ("restart", "rollback")
    ]
    if len(acted) >= int(settings["max_actions"]):
        return "alert", f"{len(acted)} actions on {client} within {settings['window']} s: {reason}"
    tried = {entry["decision"] for entry in acted if entry["app"] == app}
    steps = TUNNEL_STEPS if app == TUNNEL else APP_STEPS
    done = [step for step in steps if step in tried]
    untried = [step for step in steps if step not in tried]
    if done:
        reason = f"unhealthy again after a {' and a '.join(done)}: {reason}"
    return (untried[0] if untried else "alert"), reason


def _carry_out(registry, client, app, decision, why, status):
    """Returns the decision as it ended up (a step may escalate), its reason and result.
    ``status`` is what the client said of the app before anything was done."""
    if isinstance(status, dict) and app != TUNNEL and status.get("current") is None:
        return "gone", why, "the app has no live release on the client any more"
    if decision == "restart":
        relapse = _restart(client, app)
        if not relapse:
            return "restart", why, "restarted, healthy"
        # A restart the client did not answer may still be running: a rollback would race it.
        if app == TUNNEL or isinstance(relapse, NoAnswer):
            return _alert(client, app, f"a restart did not help: {relapse}")
        decision, why = "rollback", f"a restart did not help: {relapse}"
    if decision == "rollback":
        return _roll_back(registry, client, app, why, status)
    return _alert(client, app, why)


def _restart(client, app):
    """Restart an app or the connector; why it is still unhealthy afterwards, or None."""
    if app == TUNNEL:
        restarted = _call(client, "cloudflared.restart_service")
        if restarted is not True:
            return str(restarted)
        return _relapse(lambda: _call(client, "cloudflared.check_ready"))

    # The client watches the settling itself: a probe every 0.2 s, no round trips.
    settle = float(_settings()["settle"])
    restarted = _call(client, "shiv_app.restart_app", app, settle=settle, extra_wait=settle)
    if not isinstance(restarted, dict):
        return restarted
    return None


def _alert(client, app, why):
    _emit(f"outpost/alert/{client}/{app}", {"reason": why, "time": time.time()})
    return "alert", why, "a person must look"


def _roll_back(registry, client, app, why, status):
    if not isinstance(status, dict) or "live_since" not in status:
        status = _call(client, "shiv_app.get_status", app, quick=True)
    if not isinstance(status, dict) or not _went_live_recently(status.get("live_since")):
        return _alert(client, app, f"{why}; the live release is not recent, so no rollback")
    rolled = _call(client, "shiv_app.rollback_release", app)
    if not isinstance(rolled, dict) or "live" not in rolled:
        return _alert(client, app, f"{why}; the rollback failed: {rolled}")

    # The registry must want what now runs, or the next highstate brings the bad release back.
    registry.set_desired(app, [client], rolled["live"], None, "remediation", why)
    return "rollback", why, f"rolled back from {rolled['previous']} to {rolled['live']}"


def _relapse(check_health):
    """Watch a restarted app or connector for ``settle`` seconds; why it failed again, or None."""
    deadline = time.monotonic() + float(_settings()["settle"])
    while time.monotonic() < deadline:
        health = check_health()
        if not isinstance(health, dict):
            return str(health)
        if not health.get("healthy"):
            return health.get("reason", "unhealthy")
        time.sleep(1)
    return None


def _went_live_recently(live_since):
    return bool(live_since) and live_since >= _iso_ago(float(_settings()["window"]))


class NoAnswer(str):
    """The sentence ``_call`` gives for a client that did not answer in time."""


def _call(client, function, *args, extra_wait=0.0, **kwargs):
    """One function on one client; a missing answer comes back as a sentence. ``extra_wait``:
    seconds the function itself spends watching, on top of ``action_timeout``."""
    answers = _local().cmd(
        [client],
        function,
        list(args),
        tgt_type="list",
        timeout=int(float(_settings()["action_timeout"]) + extra_wait),
        full_return=True,
        kwarg=kwargs,
    )
    answer = answers.get(client)
    if not isinstance(answer, dict):
        return NoAnswer(f"{client} did not answer {function}")
    # get_status and check_health answer an unhealthy app with data and a non-zero retcode;
    # only an error comes back as text.
    if answer.get("retcode") and not isinstance(answer.get("ret"), dict):
        return ERROR_PREFIX.sub("", str(answer.get("ret")), count=1)
    return answer.get("ret")


def _decided(client, app, decision, reason, result=None):
    data = {"client": client, "app": app, "reason": reason, "result": result, "time": time.time()}
    if decision != "merged":
        log.info("remediation of %s on %s: %s (%s) -> %s", app, client, decision, reason, result)
    _emit(f"outpost/remediation/{client}/{app}/{decision}", data)
