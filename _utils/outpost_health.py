"""
HTTP health checks of app releases.

A release is healthy when its health URL answers 2xx and names the expected version: the
``version`` field of a JSON body, or else the version anywhere in a text body. Anything else,
a refused connection and a timeout included, is unhealthy with a reason a person can act on.
"""

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

from salt.exceptions import SaltInvocationError

log = logging.getLogger(__name__)

# How long to wait between probes while a release starts: short at first, then steadier.
FIRST_PAUSE = 0.05
LONGEST_PAUSE = 0.5
# Asking the service manager costs a process start; most releases are healthy before this.
ASK_SERVICE_AFTER = 0.5


def validate_url(url, field="url"):
    """Health checks speak HTTP: file:// and friends would read the minion's own files."""
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts else None
    except ValueError:
        parts = host = None
    if not parts or parts.scheme not in ("http", "https") or not host:
        raise SaltInvocationError(f"{field}: {url!r} is not an http:// or https:// URL")
    return url


def probe(url, expect=None, timeout=2.0):
    """One request. Returns ``(healthy, reason)``; never raises for network trouble."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read(65536).decode("utf-8", "replace")
            status = answer.status
    except urllib.error.HTTPError as err:
        return False, f"{url} answered HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return False, f"{url} unreachable: {reason}"

    if not 200 <= status < 300:
        return False, f"{url} answered HTTP {status}"
    if expect and not _names_version(body, expect):
        return False, f"{url} did not report version {expect}"
    return True, f"{url} answered HTTP {status}"


def _names_version(body, expect):
    try:
        document = json.loads(body)
    except ValueError:
        return expect in body
    if isinstance(document, dict) and "version" in document:
        return str(document["version"]) == expect
    return expect in body


def wait_healthy(url, expect=None, deadline_seconds=30.0, request_timeout=2.0, still_running=None):
    """Probe until healthy or the deadline passes. Returns ``(healthy, reason, attempts)``.

    ``still_running`` is asked between probes; when it says the process is gone for good there
    is no point waiting out the deadline.
    """
    started = time.monotonic()
    deadline = started + deadline_seconds
    pause = FIRST_PAUSE
    attempts = 0
    while True:
        attempts += 1
        healthy, reason = probe(url, expect, timeout=request_timeout)
        if healthy:
            return True, reason, attempts
        waited = time.monotonic() - started
        if still_running is not None and waited > ASK_SERVICE_AFTER and not still_running():
            return False, f"{reason}; the service is not running", attempts
        if time.monotonic() + pause > deadline:
            log.debug("health gate gave up on %s after %s attempts: %s", url, attempts, reason)
            return False, f"{reason} (gave up after {deadline_seconds:g}s)", attempts
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


# How often a release that just became healthy is probed while it settles.
SETTLE_PAUSE = 0.2


def stays_healthy(url, expect=None, seconds=10.0, request_timeout=2.0):
    """Probe for ``seconds`` after a release became healthy. Returns ``(True, None)``, or
    ``(False, reason)`` at its first failed probe: a release that fails again soon after a
    restart needs more than a restart."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        healthy, reason = probe(url, expect, timeout=request_timeout)
        if not healthy:
            return False, f"{reason} {time.monotonic() - started:.1f}s after it was healthy"
        time.sleep(SETTLE_PAUSE)
    return True, None
