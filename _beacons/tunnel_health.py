"""
Watch the Cloudflare Tunnel connector (cloudflared) on a client and tell the master when it
loses its tunnel or gets it back.

A connector is up only when its service runs and its metrics server's ``/ready`` answers 200
with ready connections: a running service whose ``/ready`` says not ready is unhealthy. A client
without the connector installed sends nothing. The beacon sends an event only on a transition.

Event tags and payload::

    salt/beacon/<minion>/tunnel_health/unhealthy   after ``failures`` failed checks in a row
    salt/beacon/<minion>/tunnel_health/healthy     on the first good check after that
        {"status": "unhealthy", "service": "RUNNING",
         "reason": "http://127.0.0.1:20241/ready answered HTTP 503",
         "failures": 3, "version": "2025.8.1", "time": 1764790000.0}

Configuration (the ``outpost.beacons`` formula state writes it from pillar):

.. code-block:: yaml

    beacons:
      tunnel_health:
        - interval: 10      # seconds between checks
        - failures: 3       # failed checks in a row before the connector counts as unhealthy

Nothing raised while checking reaches the minion's beacon loop: a check that fails to run is an
unhealthy connector.
"""

import logging
import time

import salt.utils.beacons

log = logging.getLogger(__name__)

__virtualname__ = "tunnel_health"

DEFAULT_FAILURES = 3
# Failed checks in a row, and the status last announced to the master.
MEMORY = {"failures": 0, "sent": "healthy"}


def __virtual__():
    return __virtualname__


def validate(config):
    if not isinstance(config, list):
        return False, "tunnel_health beacon: configuration must be a list"
    if not all(
        isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)
        for item in config
    ):
        return False, "tunnel_health beacon: configuration must be a list of one-key mappings"
    failures = salt.utils.beacons.list_to_dict(config).get("failures", DEFAULT_FAILURES)
    whole = isinstance(failures, int) or (isinstance(failures, float) and failures.is_integer())
    if isinstance(failures, bool) or not whole or failures < 1:
        return False, "tunnel_health beacon: failures must be a whole number of at least 1"
    return True, "valid tunnel_health beacon configuration"


def beacon(config):
    failures_needed = salt.utils.beacons.list_to_dict(config).get("failures", DEFAULT_FAILURES)
    status = _check()
    if status is None:
        return []

    MEMORY["failures"] = 0 if status["healthy"] else MEMORY["failures"] + 1
    wanted = _status_to_announce(status["healthy"], failures_needed)
    if wanted == MEMORY["sent"]:
        return []

    MEMORY["sent"] = wanted
    log.info("the cloudflared connector is %s: %s", wanted, status["reason"])
    event = {key: status.get(key) for key in ("service", "reason", "version")}
    event.update(tag=wanted, status=wanted, failures=MEMORY["failures"], time=time.time())
    return [event]


def _status_to_announce(healthy, failures_needed):
    if healthy:
        return "healthy"
    if MEMORY["failures"] >= failures_needed:
        return "unhealthy"
    return MEMORY["sent"]


def _check():
    """The connector's status, or None where outpost runs no connector. While it stays ready,
    only ``/ready`` is asked: the full status hashes the binary and asks the service manager,
    too much for the minion's main loop every interval."""
    if MEMORY["sent"] == "healthy" and _still_ready():
        return {"healthy": True}
    try:
        status = __salt__["cloudflared.get_status"]()
    except Exception as err:  # an unhealthy connector, not a broken beacon
        return {"healthy": False, "reason": str(err), "service": "UNKNOWN"}
    if status.get("service") == "ABSENT":
        # Removed: were a connector installed again, it starts out healthy.
        MEMORY.update(failures=0, sent="healthy")
        return None
    return status


def _still_ready():
    try:
        return bool(__salt__["cloudflared.check_ready"]()["healthy"])
    except Exception:  # no config.yml yet, say: the full status tells
        return False
