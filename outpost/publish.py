"""
Put a signed release where clients fetch it: a folder the master serves (``salt://releases``), or
an HTTPS artifact store.

A published file never changes. The same bytes again are fine, so a retried publish succeeds;
different bytes under a published name are refused, and in a folder nothing is copied then.
"""

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from outpost.build import sha256_of
from outpost.errors import BadArgument
from outpost.manifest import ReleaseError, check_artifact, check_sbom
from outpost.signing import verify_signature
from outpost.web import (
    TransferError,
    check_artifact_url,
    check_url,
    is_success,
    send,
    tls_context,
)

DEFAULT_URL_PREFIX = "salt://releases"
PUBLISHED_MODE = 0o644

log = logging.getLogger(__name__)


def release_files(release, public_key):
    """
    ``(source, published name)`` of each file, checked against the manifest and the signature
    against ``public_key``: the zipapp first, under the name the formula fetches by default, and
    the signature last. A published file never changes, so a bad one could never be replaced.
    """
    check_artifact(release)
    verify_signature(release, public_key)
    sbom = check_sbom(release)
    if sbom is None:
        log.warning("%s has no scan results: no SBOM to publish", release.manifest_path.name)
    others = [*([sbom] if sbom else []), release.manifest_path, release.signature_path]
    return [(release.pyz, release.published_name), *((path, path.name) for path in others)]


# -- a folder the master serves ---------------------------------------------------------------


def publish_to_folder(release, root, public_key, url_prefix=DEFAULT_URL_PREFIX):
    """Copy the release into ``root/<app>/``; return the artifact URL the master will see."""
    check_url_prefix(url_prefix)
    root = Path(root)
    if not root.is_dir():
        raise BadArgument(f"--root: {root} is not a folder")
    folder = root / release.app
    files = release_files(release, public_key)

    # Every name is checked before anything is copied, so a refused publish leaves no trace.
    for source, name in files:
        already_published(source, folder / name)
    folder.mkdir(exist_ok=True)
    for source, name in files:
        place(source, folder / name)

    log.info("published %s %s into %s", release.app, release.manifest["version"], folder)
    return f"{url_prefix.rstrip('/')}/{release.app}/{release.published_name}"


def check_url_prefix(prefix):
    """What the master calls the folder: the start of an artifact URL the master accepts."""
    check_artifact_url(prefix, "--url-prefix")
    refuse_query(prefix, "--url-prefix")
    return prefix


def refuse_query(url, option):
    """File names are appended to ``url``: a query or fragment would swallow them."""
    if "?" in url or "#" in url:
        raise BadArgument(
            f"{option}: file names are appended to it, so it takes no query or fragment"
        )


def already_published(source, target):
    """True when ``target`` holds the same bytes; refuses when it holds others."""
    if not target.exists():
        return False
    if sha256_of(target) != sha256_of(source):
        raise ReleaseError(
            f"{target} already exists with other content; a published release never changes"
        )
    return True


def place(source, target):
    if already_published(source, target):
        log.debug("%s is already published", target)
        return

    descriptor, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as out, open(source, "rb") as stream:
            shutil.copyfileobj(stream, out)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private; the master may read as another user.
        os.chmod(partial, PUBLISHED_MODE)
        # A hard link never replaces: if the name appeared meanwhile, this fails instead.
        os.link(partial, target)
    except FileExistsError:
        already_published(source, target)
    finally:
        os.unlink(partial)


# -- an HTTPS artifact store ------------------------------------------------------------------


def publish_over_https(release, base_url, public_key, token=None, cacert=None):
    """PUT each file to ``<base_url><app>/<file>``; return the zipapp's URL."""
    check_url(base_url, "--url")
    refuse_query(base_url, "--url")
    base = base_url if base_url.endswith("/") else base_url + "/"
    context = tls_context(cacert)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    for source, name in release_files(release, public_key):
        upload_once(f"{base}{release.app}/{name}", source, headers, context)
    log.info("published %s %s to %s", release.app, release.manifest["version"], base)
    return f"{base}{release.app}/{release.published_name}"


def upload_once(url, source, headers, context):
    # If-None-Match: * asks the store to refuse (412) rather than overwrite. A store that ignores
    # it overwrites: configure the store itself to keep objects immutable too.
    put_headers = dict(headers, **{"If-None-Match": "*"})
    put_headers["Content-Type"] = content_type(source)
    put_headers["Content-Length"] = str(source.stat().st_size)
    with open(source, "rb") as body:
        request = urllib.request.Request(url, data=body, headers=put_headers, method="PUT")
        status, reason, _ = send(request, context)

    if is_success(status):
        log.info("uploaded %s", url)
        return
    if status == 412 and same_remote_content(url, source, headers, context):
        log.info("%s is already published", url)
        return
    if status == 412:
        raise ReleaseError(f"{url} already holds other content; a published release never changes")
    raise TransferError(f"PUT {url}: the store answered {status} {reason}")


def same_remote_content(url, source, headers, context):
    status, reason, body = send(urllib.request.Request(url, headers=headers), context)
    if not is_success(status):
        raise TransferError(f"GET {url}: the store answered {status} {reason} after a 412")
    return body == source.read_bytes()


def content_type(path):
    return "application/json" if path.name.endswith(".json") else "application/octet-stream"
