"""
HTTP for ``publish --url`` and ``notify``: HTTPS with an optional private CA, no redirects, and
every answer returned as a status rather than raised.
"""

import http.client
import ipaddress
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from outpost.errors import BadArgument, OutpostError

TIMEOUT_SECONDS = 60

log = logging.getLogger(__name__)


class TransferError(OutpostError):
    """Nothing usable came back from a server; the message says what happened."""


def split_url(url, option):
    """
    ``url`` in parts, refused naming ``option`` when a part is unusable: it does not parse, holds
    white space or control characters (urlsplit drops some silently), has a port outside 1 to
    65535, or holds credentials, which would end up in logs, events and printed URLs.
    """
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise BadArgument(f"{option}: {url!r} holds white space or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.hostname  # noqa: B018 - urllib checks the brackets of an IPv6 host only when asked
    except ValueError as err:
        raise BadArgument(f"{option}: {url!r} is not a URL ({err})") from None
    # urllib checks the port only when asked; unchecked, glibc connects to 99999 as 34463.
    try:
        usable_port = parts.port is None or parts.port > 0
    except ValueError:
        usable_port = False
    if not usable_port:
        raise BadArgument(f"{option}: {url!r}: the port is not a number from 1 to 65535")
    if parts.username or parts.password:
        raise BadArgument(f"{option}: the URL holds credentials; outpost takes them from the env")
    return parts


def check_url(url, option, loopback_http=False):
    """
    Refuse what cannot be sent safely: what ``split_url`` refuses, plain http (except to this
    machine, if ``loopback_http``), or no host.
    """
    parts = split_url(url, option)
    if not parts.hostname:
        raise BadArgument(f"{option}: {url!r} names no host")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and loopback_http and is_loopback(parts.hostname):
        return url
    allowed = "https:// (or http:// to this machine)" if loopback_http else "https://"
    raise BadArgument(f"{option}: {url!r} is not {allowed}; plain http is refused")


def check_artifact_url(url, option):
    """
    Where clients fetch a zipapp: the master's fileserver (salt://) or an HTTPS store, with
    nothing in it the master refuses.
    """
    parts = split_url(url, option)
    on_master = parts.scheme == "salt" and (parts.netloc or parts.path.strip("/"))
    if not (on_master or (parts.scheme == "https" and parts.hostname)):
        raise BadArgument(f"{option}: {url!r} is not a salt:// or https:// URL")
    if ".." in url:
        raise BadArgument(f"{option}: {url!r} holds '..', which the master refuses")
    return parts


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(cacert=None):
    """Trust the system's CAs, or only ``cacert`` when given (a private CA)."""
    if cacert is not None and not Path(cacert).is_file():
        raise BadArgument(f"--cacert: {cacert} is not a file")
    try:
        return ssl.create_default_context(cafile=cacert)
    except ssl.SSLError as err:
        raise BadArgument(f"--cacert: {cacert} holds no usable certificate ({err})") from None


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would resend the body and its headers to a place nobody checked: answer with it.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def send(request, context):
    """Send ``request``; return ``(status, reason, body bytes)``, whatever the status."""
    opener = urllib.request.build_opener(
        RefuseRedirects, urllib.request.HTTPSHandler(context=context)
    )
    log.debug("%s %s", request.get_method(), request.full_url)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, response.reason, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.reason, err.read()
    except urllib.error.URLError as err:
        raise TransferError(f"{request.get_method()} {request.full_url}: {err.reason}") from None
    except (OSError, http.client.HTTPException) as err:
        raise TransferError(f"{request.get_method()} {request.full_url}: {err!r}") from None


def is_success(status):
    return 200 <= status < 300
