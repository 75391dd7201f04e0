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


def check_url(url, option, loopback_http=False):
    """
    Refuse what cannot be sent safely: plain http (except to this machine, if ``loopback_http``),
    no host, or credentials in the URL, which would end up in logs and printed URLs.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError as err:
        raise BadArgument(f"{option}: {url!r} is not a URL ({err})") from None
    if parts.username or parts.password:
        raise BadArgument(f"{option}: the URL holds credentials; outpost takes them from the env")
    if not hostname:
        raise BadArgument(f"{option}: {url!r} names no host")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and loopback_http and is_loopback(hostname):
        return url
    allowed = "https:// (or http:// to this machine)" if loopback_http else "https://"
    raise BadArgument(f"{option}: {url!r} is not {allowed}; plain http is refused")


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
