"""
outpost's master-side events, signed so that no minion can forge them.

A minion chooses its own event tags: ``event.send outpost/release/...`` reaches the master's bus
like any other event. Every event outpost's runners fire goes through ``fire``, which adds
``_outpost_sig``: HMAC-SHA256 over the tag and the canonical JSON of the data, with a key derived
from the master's private key (``<pki_dir>/master.pem``), which minions never have. The audit
returner keeps an ``outpost/*`` event as a decision only when ``verified`` says so.

The key is read once per process and never logged, nor put in an event or a return.
"""

import hashlib
import hmac
import json
import logging
import os

import salt.utils.event

log = logging.getLogger(__name__)

SIGNATURE = "_outpost_sig"
# Added by Salt's event bus after signing, so never covered.
UNSIGNED_FIELDS = {SIGNATURE, "_stamp"}
KEY_CONTEXT = b"outpost events v1\0"
_KEYS = {}


def fire(opts, tag, data):
    """Fire ``data`` on the master's event bus under ``tag``, signed."""
    signed = sign(opts, tag, data)
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
        bus.fire_event(signed, tag)


def sign(opts, tag, data):
    """A copy of ``data`` with its signature; unsigned (and logged) if the key is unreadable."""
    signed = dict(data or {})
    key = _key(opts.get("pki_dir", ""))
    if key is None:
        log.error("outpost event %s fired unsigned: the master key is unreadable", tag)
        return signed
    signed[SIGNATURE] = _digest(key, tag, signed)
    return signed


def verified(opts, tag, data):
    """True when ``data`` carries a valid signature for ``tag`` from this master."""
    if not isinstance(data, dict) or not isinstance(data.get(SIGNATURE), str):
        return False
    key = _key(opts.get("pki_dir", ""))
    if key is None:
        return False
    return hmac.compare_digest(data[SIGNATURE], _digest(key, tag, data))


def canonical(tag, data):
    body = {name: value for name, value in data.items() if name not in UNSIGNED_FIELDS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return tag.encode("utf-8") + b"\n" + text.encode("utf-8")


def _digest(key, tag, data):
    return hmac.new(key, canonical(tag, data), hashlib.sha256).hexdigest()


def _key(pki_dir):
    """The signing key, read once per process; a failed read is tried again next time."""
    if pki_dir not in _KEYS:
        try:
            with open(os.path.join(pki_dir, "master.pem"), "rb") as pem:
                _KEYS[pki_dir] = hashlib.sha256(KEY_CONTEXT + pem.read()).digest()
        except OSError as err:
            log.error("outpost events: cannot read the master key in %s: %s", pki_dir, err)
            return None
    return _KEYS[pki_dir]
