"""
HTTP health checks of app releases.

A release is healthy when its health URL answers 2xx and names the expected version: the
``version`` field of a JSON object, or else the version as a whole word of a text body.
Anything else, a refused connection and a timeout included, is unhealthy with a reason a person
can act on.
"""

import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
import urllib.parse

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
    try:
        parts.port  # noqa: B018 - urllib checks the port only when asked
    except ValueError:
        raise SaltInvocationError(f"{field}: {url!r} has no valid port") from None
    return url


class Unreachable(Exception):
    """No complete HTTP answer: refused, reset, timed out, or not HTTP at all."""


def fetch(url, timeout=2.0, limit=65536):
    """One GET; ``(status, body)`` of a complete answer within ``timeout`` seconds in all.

    A socket's own timeout counts per read, so an answer dripping in a byte at a time would
    hold the caller (the beacon runs in the minion's main loop) for as long as it drips: once
    connected, a timer cuts the socket when the whole request is due, and whatever was read by
    then does not count. Connecting is bounded by ``timeout`` per address. Redirects are not
    followed.
    """
    cut = _Cutter(timeout)
    connection = None
    try:
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            raise ValueError("no host in the URL")
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = kind(parts.hostname, parts.port, timeout=timeout)
        connection.connect()
        cut.arm(connection.sock)
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        connection.request("GET", path, headers={"Connection": "close"})
        answer = connection.getresponse()
        status, body = answer.status, answer.read(limit)
    except (http.client.HTTPException, OSError, ValueError, TypeError) as err:
        if cut.fired:
            raise Unreachable(f"no complete answer within {timeout:g}s") from None
        raise Unreachable(str(err) or type(err).__name__) from None
    finally:
        cut.disarm()
        if connection is not None:
            connection.close()
    if cut.fired:
        raise Unreachable(f"no complete answer within {timeout:g}s")
    return status, body


class _Cutter:
    """Shuts a socket down when a deadline passes, and remembers that it did."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self.timer = None

    def arm(self, sock):
        self.timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._cut, [sock])
        self.timer.daemon = True
        self.timer.start()

    def _cut(self, sock):
        self.fired = True
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def disarm(self):
        if self.timer is not None:
            self.timer.cancel()


def probe(url, expect=None, timeout=2.0):
    """One request. Returns ``(healthy, reason)``; never raises for network or HTTP trouble."""
    try:
        status, raw = fetch(url, timeout=timeout)
    except Unreachable as err:
        return False, f"{url} unreachable: {err}"

    if not 200 <= status < 300:
        return False, f"{url} answered HTTP {status}"
    if expect and not _names_version(raw.decode("utf-8", "replace"), expect):
        return False, f"{url} did not report version {expect}"
    return True, f"{url} answered HTTP {status}"


def _names_version(body, expect):
    """A JSON object's ``version`` field, or the version as a whole word of a text body:
    ``1.0.0`` is not in ``11.0.0`` nor in ``1.0.0-rc.1``."""
    try:
        document = json.loads(body)
    except ValueError:
        word = rf"(?<![0-9A-Za-z.+-]){re.escape(expect)}(?![0-9A-Za-z.+-])"
        return re.search(word, body) is not None
    return isinstance(document, dict) and str(document.get("version")) == expect


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
