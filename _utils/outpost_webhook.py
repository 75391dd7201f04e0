"""
What the master checks of a release announcement before it acts on it.

CI posts a JSON body to salt-api's ``/hook/outpost/release``::

    {"manifest": {...}, "signature": "<base64 Ed25519 over the canonical manifest>",
     "artifact_url": "salt://releases/hello/hello-1.1.0.pyz"}

with the headers ``X-Outpost-Timestamp`` (Unix seconds) and ``X-Outpost-Signature``
(``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<raw body>`` under the shared secret).

Every check raises ``RefusedRelease`` with a reason that names the field and never echoes a
secret; nothing here acts on anything.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import time

from salt.exceptions import SaltException

# Synced _utils are importable by their bare name; the clients and the CLI share its rules.
import outpost_release

SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_AGE_SECONDS = 300
TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
MAX_BODY_BYTES = 256 * 1024
# Who receives the release is outpost's own configuration, never the request's to say.
TARGETING_KEYS = {"tgt", "target", "targets", "tgt_type", "minions", "clients", "ring", "rings"}
# Each field of the body: the type it must have, and its name in a refusal.
BODY_FIELDS = {
    "manifest": (dict, "an object"),
    "signature": (str, "a string"),
    "artifact_url": (str, "a string"),
}


class RefusedRelease(SaltException):
    """A release announcement failed a check; the message says which and why."""


def canonical_manifest(manifest):
    """The bytes a manifest signature covers: sorted keys, no white space, UTF-8."""
    unsigned = {key: value for key, value in manifest.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hmac_signature(secret, timestamp, raw_body):
    message = str(timestamp).encode() + b"." + _as_bytes(raw_body)
    return "sha256=" + hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def _as_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def header(headers, name):
    """HTTP header names are case-insensitive; CherryPy title-cases them."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def timestamp(stamp):
    """Unix seconds in ASCII digits only: int() would also take a sign, white space, ``_`` and
    other scripts' digits, each one more spelling of the same signed time."""
    if not TIMESTAMP.fullmatch(str(stamp)):
        raise RefusedRelease(
            "headers: X-Outpost-Timestamp is not Unix seconds (digits, no leading zero)"
        )
    return int(stamp)


def check_hmac(secret, headers, raw_body, now=None, max_age=MAX_AGE_SECONDS):
    if not secret:
        raise RefusedRelease("configuration: no webhook secret is set on the master")
    stamp = header(headers, "X-Outpost-Timestamp")
    given = header(headers, "X-Outpost-Signature")
    if not stamp or not given:
        raise RefusedRelease("headers: X-Outpost-Timestamp and X-Outpost-Signature are required")
    sent_at = timestamp(stamp)

    if not hmac.compare_digest(hmac_signature(secret, sent_at, raw_body), str(given)):
        raise RefusedRelease("headers: X-Outpost-Signature does not match the body")
    age = (time.time() if now is None else now) - sent_at
    if abs(age) > max_age:
        raise RefusedRelease(f"headers: the request is {int(age)} s old; at most {max_age} s")


def parse_body(raw_body):
    """The body as JSON, every field of the shape the later checks expect."""
    if len(_as_bytes(raw_body)) > MAX_BODY_BYTES:
        raise RefusedRelease(f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(_as_bytes(raw_body), parse_constant=_refuse_constant)
    except ValueError as err:
        raise RefusedRelease(f"body: not JSON ({err})") from None
    except RecursionError:
        raise RefusedRelease("body: nested deeper than JSON can be read") from None
    if not isinstance(body, dict):
        raise RefusedRelease("body: not a JSON object")
    _refuse_targets(body)
    unknown = set(body) - set(BODY_FIELDS)
    if unknown:
        raise RefusedRelease(f"body: unexpected field {sorted(unknown)[0]}")
    for field, (kind, what) in BODY_FIELDS.items():
        if not isinstance(body.get(field), kind):
            raise RefusedRelease(f"{field}: missing or not {what}")
    if outpost_release.nesting_depth(body["manifest"]) > outpost_release.MANIFEST_MAX_DEPTH:
        raise RefusedRelease(
            f"manifest: nested deeper than {outpost_release.MANIFEST_MAX_DEPTH} levels"
        )
    _refuse_targets(body["manifest"])
    return body


def _refuse_constant(name):
    # Python's json reads NaN and Infinity, which JSON itself does not have.
    raise ValueError(f"{name} is not a JSON value")


def _refuse_targets(fields):
    named = TARGETING_KEYS & set(fields)
    if named:
        raise RefusedRelease(f"body: names targets ({sorted(named)[0]}); targets come from outpost")


def check_schema(body, allowlist):
    manifest = body.get("manifest")
    if not isinstance(manifest, dict):
        raise RefusedRelease("manifest: missing or not an object")
    problem = outpost_release.app_name_problem(manifest.get("app"))
    if problem:
        raise RefusedRelease(f"manifest.app: {problem}")
    _check(manifest.get("version"), outpost_release.VERSION, "manifest.version", "a version")
    _check(manifest.get("sha256"), SHA256, "manifest.sha256", "64 lowercase hex digits")
    url = body.get("artifact_url")
    if not isinstance(url, str) or not any(url.startswith(prefix) for prefix in allowlist or ()):
        raise RefusedRelease("artifact_url: not under an allowed artifact location")
    if ".." in url or any(ord(char) < 32 for char in url):
        raise RefusedRelease("artifact_url: contains '..' or control characters")
    return manifest


def _check(value, pattern, field, what):
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RefusedRelease(f"{field}: not {what}")


def check_signature(manifest, signature, public_keys):
    """Any of the configured Ed25519 public keys (base64 of the raw 32 bytes) may have signed."""
    # cryptography ships with Salt's own packages; imported here so the module loads without it.
    from cryptography.exceptions import InvalidSignature  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # pylint: disable=import-outside-toplevel
        Ed25519PublicKey,
    )

    try:
        raw_signature = base64.b64decode(str(signature or ""), validate=True)
    except (binascii.Error, ValueError):
        raise RefusedRelease("signature: not base64") from None
    message = canonical_manifest(manifest)
    for key in _trusted_keys(public_keys, Ed25519PublicKey):
        try:
            key.verify(raw_signature, message)
            return
        except InvalidSignature:
            continue
    raise RefusedRelease("signature: no trusted key signed this manifest")


def _trusted_keys(public_keys, key_class):
    """The configured keys, refused by their place in the config when one is malformed."""
    field = "outpost:releases:signing_keys"
    if public_keys is None:
        return []
    if not isinstance(public_keys, list):
        raise RefusedRelease(f"{field}: expected a list of base64 Ed25519 public keys")
    keys = []
    for index, encoded in enumerate(public_keys):
        try:
            keys.append(key_class.from_public_bytes(base64.b64decode(str(encoded), validate=True)))
        except (binascii.Error, ValueError):
            raise RefusedRelease(
                f"{field}[{index}]: not a base64 Ed25519 public key (32 raw bytes)"
            ) from None
    return keys


def verify_announcement(raw_body, headers, secret, public_keys, allowlist, now=None):
    """All checks, cheapest and most telling first. Returns the body with its manifest."""
    check_hmac(secret, headers, raw_body, now=now)
    body = parse_body(raw_body)
    manifest = check_schema(body, allowlist)
    check_signature(manifest, body.get("signature"), public_keys)
    return body


def announcement_key(raw_body, headers):
    """One announcement, however many masters hear it: its timestamp and body, hashed. CI's
    retry of the same request has the same key; a new notify has a new timestamp."""
    # check_hmac took the timestamp in its one spelling only, so the header is canonical.
    stamp = str(header(headers, "X-Outpost-Timestamp"))
    digest = hashlib.sha256(stamp.encode() + b"." + _as_bytes(raw_body)).hexdigest()
    return f"announcement:{digest}"
