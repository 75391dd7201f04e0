"""
supervisord's XML-RPC interface, reached where its configuration says supervisorctl reaches it.

Salt's ``supervisord`` execution module starts a ``supervisorctl`` process for every call; each
costs about a tenth of a core-second, and a release switch makes four of them. This speaks the
same documented interface (``supervisor.*`` over HTTP, on a Unix socket or TCP) with the
standard library only, as Salt's own package ships it.
"""

import configparser
import http.client
import os
import socket
import urllib.parse
import xmlrpc.client

from salt.exceptions import CommandExecutionError

# supervisord's fault codes (supervisor.xmlrpc.Faults) that outpost tells apart.
BAD_NAME = 10
ALREADY_STARTED = 60
NOT_RUNNING = 70
ALREADY_ADDED = 90
# A stop waits for the program to exit, bounded by its stopwaitsecs (outpost writes 30).
CALL_TIMEOUT = 120


class SupervisorError(CommandExecutionError):
    """supervisord refused a call or could not be reached."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """HTTP to a Unix socket when ``socket_path`` is set, else plain TCP, both with a timeout."""

    def __init__(self, socket_path=None, timeout=CALL_TIMEOUT):
        super().__init__()
        self.socket_path = socket_path
        self.timeout = timeout

    def make_connection(self, host):
        # get_host_info also turns user:password@ into the Authorization header.
        chost, self._extra_headers, _ = self.get_host_info(host)
        if self.socket_path:
            return _UnixConnection(self.socket_path, self.timeout)
        return http.client.HTTPConnection(chost, timeout=self.timeout)


def server_settings(conf_file):
    """Where and as whom supervisorctl would talk to the supervisord of ``conf_file``:
    ``(url, username, password)``, read as supervisorctl reads them."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        with open(conf_file, encoding="utf-8") as stream:
            parser.read_file(stream)
    except (OSError, configparser.Error) as err:
        raise SupervisorError(f"supervisor: cannot read {conf_file}: {err}") from None

    here = os.path.dirname(os.path.abspath(conf_file))

    def option(section, name):
        value = parser.get(section, name, fallback=None)
        return value.replace("%(here)s", here).strip() if value else None

    url = option("supervisorctl", "serverurl")
    if not url and option("unix_http_server", "file"):
        url = "unix://" + option("unix_http_server", "file")
    if not url:
        url = "http://localhost:9001"
    return url, option("supervisorctl", "username"), option("supervisorctl", "password")


def connect(conf_file, timeout=CALL_TIMEOUT):
    """A proxy whose ``supervisor.*`` calls reach the supervisord of ``conf_file``."""
    url, username, password = server_settings(conf_file)
    credentials = ""
    if username:
        quote = urllib.parse.quote
        credentials = f"{quote(username, safe='')}:{quote(password or '', safe='')}@"
    if url.startswith("unix://"):
        transport = _Transport(socket_path=url[len("unix://") :], timeout=timeout)
        return xmlrpc.client.ServerProxy(f"http://{credentials}localhost/RPC2", transport)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise SupervisorError(
            f"supervisor: serverurl {url!r} in {conf_file} is not unix:// or http://"
        )
    transport = _Transport(timeout=timeout)
    return xmlrpc.client.ServerProxy(f"http://{credentials}{parsed.netloc}/RPC2", transport)


def call(proxy, method, *args, tolerate=()):
    """``supervisor.<method>(*args)``; a fault whose code is in ``tolerate`` returns None."""
    try:
        return getattr(proxy.supervisor, method)(*args)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode in tolerate:
            return None
        raise SupervisorError(f"supervisord refused {method}: {fault.faultString}") from None
    except xmlrpc.client.ProtocolError as err:
        # The URL carries the credentials: say only what went wrong.
        raise SupervisorError(f"supervisord refused {method}: {err.errcode} {err.errmsg}") from None
    except OSError as err:
        raise SupervisorError(f"supervisord does not answer {method}: {err}") from None
