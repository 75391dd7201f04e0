"""
Announce a published release to the master through salt-api's webhook.

The body is ``{"manifest", "signature", "artifact_url"}``; ``X-Outpost-Timestamp`` and
``X-Outpost-Signature`` carry the HMAC over ``<timestamp>.<body>`` that the master checks in
``_utils/outpost_webhook.py`` before anything else. The shared secret is used here and nowhere
else: it is never printed, logged or sent.
"""

import json
import logging
import time
import urllib.request

from outpost.errors import BadArgument
from outpost.manifest import read_signature
from outpost.signing import hmac_signature
from outpost.web import check_artifact_url, check_url, send, tls_context

log = logging.getLogger(__name__)


def announcement_body(release, artifact_url):
    """The raw bytes to post: the manifest as signed, its signature, and where the zipapp is."""
    check_artifact_url(artifact_url, "--artifact-url")
    if not artifact_url.endswith("/" + release.published_name):
        raise BadArgument(
            f"--artifact-url: {artifact_url!r} does not end in /{release.published_name}"
        )
    body = {
        "manifest": release.manifest,
        "signature": read_signature(release),
        "artifact_url": artifact_url,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def announce(release, hook_url, artifact_url, secret, cacert=None, now=None):
    """POST the announcement to ``hook_url``; return ``(status, reason, answer bytes)``."""
    # salt-api on the master itself may listen on plain http; anything further needs TLS.
    check_url(hook_url, "--hook", loopback_http=True)
    context = tls_context(cacert)
    raw_body = announcement_body(release, artifact_url)

    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        "X-Outpost-Timestamp": str(timestamp),
        "X-Outpost-Signature": hmac_signature(secret, timestamp, raw_body),
    }
    request = urllib.request.Request(hook_url, data=raw_body, headers=headers, method="POST")
    log.info("announcing %s %s to %s", release.app, release.manifest["version"], hook_url)
    return send(request, context)


def delivered(status, answer):
    """Whether the announcement reached the master's event bus. salt-api answers a hook with
    HTTP 200 even when it could not fire the event, saying so only in ``{"success": false}``."""
    if not 200 <= status < 300:
        return False
    try:
        said = json.loads(answer)
    except ValueError:
        return False  # a proxy's page or a wrong path: nothing says the bus took it
    return isinstance(said, dict) and said.get("success") is True
