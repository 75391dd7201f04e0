"""
Watch outpost's apps on a client and tell the master when one turns unhealthy or recovers.

Salt 3008 has no HTTP health beacon in core. This one checks every app that has a live release
(its health URL, expecting the live version, and its service), and sends an event only on a
transition, plus a heartbeat that tells the master the client is alive even behind NAT.

Event tags and payloads::

    salt/beacon/<minion>/app_health/<app>/unhealthy   after ``failures`` failed checks in a row
    salt/beacon/<minion>/app_health/<app>/healthy     on the first good check after that
        {"app": "hello", "release": "1.1.0", "status": "unhealthy",
         "reason": "http://127.0.0.1:8080/healthz unreachable: [Errno 111] Connection refused",
         "failures": 3, "service": "RUNNING", "time": 1764790000.0}
        ``service`` is the service manager's state, asked only when the check fails (else null)

    salt/beacon/<minion>/app_health/heartbeat         every ``heartbeat`` seconds
        {"apps": {"hello": {"release": "1.1.0", "status": "healthy"}}, "time": 1764790000.0}

Configuration (the ``outpost.beacons`` formula state writes it from pillar):

.. code-block:: yaml

    beacons:
      app_health:
        - interval: 10      # seconds between checks
        - failures: 3       # failed checks in a row before an app counts as unhealthy
        - heartbeat: 300    # seconds between heartbeats

A refused connection or a timeout is an unhealthy app, never a crash of the beacon: nothing
raised here reaches the minion's beacon loop.
"""

import logging
import math
import time

import salt.utils.beacons

log = logging.getLogger(__name__)

__virtualname__ = "app_health"

DEFAULTS = {"failures": 3, "heartbeat": 300}
# What the beacon remembers between runs: per app, failures in a row and the last status sent.
MEMORY = {"apps": {}, "last_heartbeat": 0.0}


def __virtual__():
    return __virtualname__


def validate(config):
    try:
        _settings(config)
    except ValueError as err:
        return False, str(err)
    return True, "valid app_health beacon configuration"


def _settings(config):
    """The configuration as a dict; ValueError names a bad setting. A bool, NaN or a fraction
    of a failure would break or bend every check (the loader gives beacons no _utils)."""
    if not isinstance(config, list) or not all(
        isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)
        for item in config
    ):
        raise ValueError("app_health beacon: configuration must be a list of one-key mappings")
    settings = dict(DEFAULTS, **salt.utils.beacons.list_to_dict(config))
    for key in DEFAULTS:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"app_health beacon: {key} must be a number, not {value!r}")
        if not math.isfinite(value) or value < 1 or (key == "failures" and value != int(value)):
            raise ValueError(f"app_health beacon: {key} must be at least 1, not {value!r}")
    return settings


def beacon(config):
    settings = _settings(config)
    now = time.time()
    events = []
    statuses = {}
    try:
        apps = __salt__["shiv_app.list_apps"]()
    except Exception as err:  # the beacon loop must never die of us
        log.error("app_health beacon could not list apps: %s", err)
        return []

    _forget_all_but(apps)
    for app in apps:
        status = _check(app)
        if status is None:
            continue
        if status.get("changing"):
            # A deploy, restart or rollback stops the app for a moment: not a failure.
            statuses[app] = {"release": status["current"], "status": "changing"}
            continue
        statuses[app] = {"release": status["current"], "status": _word(status["healthy"])}
        event = _transition(app, status, int(settings["failures"]), now)
        if event:
            events.append(event)

    if now - MEMORY["last_heartbeat"] >= float(settings["heartbeat"]):
        MEMORY["last_heartbeat"] = now
        events.append({"tag": "heartbeat", "apps": statuses, "time": now})
    return events


def _forget_all_but(apps):
    """A removed app is no longer watched; were it installed again, it starts out healthy."""
    for gone in set(MEMORY["apps"]) - set(apps):
        del MEMORY["apps"][gone]


def _check(app):
    """The app's status, or None for an app removed since it was listed. The service manager is
    asked only when the HTTP check fails: this runs in the minion's main loop every interval."""
    try:
        status = __salt__["shiv_app.get_status"](app, quick=True)
    except Exception as err:  # an unhealthy app, not a broken beacon
        return {"current": None, "healthy": False, "reason": str(err), "service": "UNKNOWN"}
    if status["current"] is None:
        MEMORY["apps"].pop(app, None)
        return None
    return status


def _word(healthy):
    return "healthy" if healthy else "unhealthy"


def _transition(app, status, failures_needed, now):
    """An event when an app crosses from healthy to unhealthy or back, else None."""
    memory = MEMORY["apps"].setdefault(app, {"failures": 0, "sent": "healthy"})
    memory["failures"] = 0 if status["healthy"] else memory["failures"] + 1
    if status["healthy"]:
        wanted = "healthy"
    elif memory["failures"] >= failures_needed:
        wanted = "unhealthy"
    else:
        wanted = memory["sent"]
    if wanted == memory["sent"]:
        return None

    memory["sent"] = wanted
    log.info("app %s %s is %s: %s", app, status["current"], wanted, status["reason"])
    return {
        "tag": f"{app}/{wanted}",
        "app": app,
        "release": status["current"],
        "status": wanted,
        "reason": status["reason"],
        "failures": memory["failures"],
        "service": status.get("service"),
        "time": now,
    }
