"""
The CI side of the two signatures on a release announcement.

An Ed25519 signature over the manifest says who vouches for the release; an HMAC over the whole
request says the webhook call came from CI and is fresh. The master rebuilds the same bytes in
``_utils/outpost_webhook.py``; the unit tests check both sides agree to the byte.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from outpost.errors import BadArgument
from outpost.manifest import check_artifact

PRIVATE_KEY_MODE = 0o600
PUBLIC_KEY_MODE = 0o644

log = logging.getLogger(__name__)


def canonical_manifest(manifest):
    """What a manifest signature covers: sorted keys, no white space, UTF-8, no ``signature``."""
    unsigned = {key: value for key, value in manifest.items() if key != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def hmac_signature(secret, timestamp, raw_body):
    """The ``X-Outpost-Signature`` header: ``sha256=`` and the HMAC of ``<timestamp>.<body>``."""
    message = str(timestamp).encode("ascii") + b"." + raw_body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def generate_keys(private_path, public_path):
    """
    Write a new Ed25519 key pair: the private key as unencrypted PKCS8 PEM, readable by its owner
    only, and the public key as base64 of its 32 raw bytes, as the master's configuration lists
    it. Returns that base64 text. Existing files are never replaced.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for path, option in ((private_path, "--private"), (public_path, "--public")):
        if path.exists():
            raise BadArgument(f"{option}: {path} exists; outpost never replaces a key")

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    public_text = base64.b64encode(public_raw).decode("ascii")

    write_new_file(private_path, private_pem, PRIVATE_KEY_MODE)
    write_new_file(public_path, (public_text + "\n").encode("ascii"), PUBLIC_KEY_MODE)
    log.info("wrote a new signing key to %s and its public key to %s", private_path, public_path)
    return public_text


def write_new_file(path, data, mode):
    # Created with its final mode, so the private key is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)


def load_private_key(path):
    try:
        pem = Path(path).read_bytes()
    except OSError as err:
        raise BadArgument(f"--key: cannot read {path} ({err.strerror})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise BadArgument(f"--key: {path} is encrypted; outpost reads unencrypted keys") from None
    except ValueError:
        raise BadArgument(f"--key: {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadArgument(f"--key: {path} is not an Ed25519 key (outpost release keygen)")
    return key


def sign_manifest(release, key_path):
    """Sign the manifest of ``release``, whose zipapp must match it; write ``<manifest>.sig``."""
    key = load_private_key(key_path)
    check_artifact(release)

    signature = key.sign(canonical_manifest(release.manifest))
    text = base64.b64encode(signature).decode("ascii")
    partial = release.signature_path.with_name(f".{release.signature_path.name}.partial")
    partial.write_text(text + "\n", encoding="ascii")
    os.replace(partial, release.signature_path)
    log.info("signed %s", release.manifest_path.name)
    return release.signature_path
