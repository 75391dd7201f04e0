"""
The CI side of the two signatures on a release announcement.

An Ed25519 signature over the manifest says who vouches for the release; an HMAC over the whole
request says the webhook call came from CI and is fresh. The master rebuilds the same bytes in
``_utils/outpost_webhook.py``; the unit tests check both sides agree to the byte.
"""

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from outpost.errors import BadArgument
from outpost.manifest import ReleaseError, check_artifact, read_signature

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
    public_text = public_key_text(key)

    write_new_file(private_path, private_pem, PRIVATE_KEY_MODE)
    write_new_file(public_path, (public_text + "\n").encode("ascii"), PUBLIC_KEY_MODE)
    log.info("wrote a new signing key to %s and its public key to %s", private_path, public_path)
    return public_text


def public_key_text(private_key):
    """The public half of ``private_key`` as the master lists it: base64 of its 32 raw bytes."""
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode("ascii")


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


def load_public_key(path):
    """A public key file as ``keygen`` writes it and the master lists it: base64 of 32 bytes."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise BadArgument(f"--public: cannot read {path} ({err})") from None
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise BadArgument(
            f"--public: {path} is not an Ed25519 public key (base64 of 32 bytes, as keygen writes)"
        ) from None


def verify_signature(release, public_key):
    """Refuse a release whose ``<manifest>.sig`` is not ``public_key``'s over this manifest."""
    signature = base64.b64decode(read_signature(release))
    try:
        public_key.verify(signature, canonical_manifest(release.manifest))
    except InvalidSignature:
        raise ReleaseError(
            f"{release.signature_path.name}: does not verify against this manifest and the "
            "--public key; sign again (outpost release sign) with the key the master trusts"
        ) from None
