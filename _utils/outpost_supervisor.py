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
from xml.parsers.expat import ExpatError

from salt.exceptions import CommandExecutionError

# supervisord's fault codes (supervisor.xmlrpc.Faults) that outpost tells apart.
BAD_NAME = 10
ALREADY_STARTED = 60
NOT_RUNNING = 70
ALREADY_ADDED = 90
# Every call but a stop answers at once; the beacon asks from the minion's main loop, so a wedged
# supervisord must not hold it long.
CALL_TIMEOUT = 10
# A stop waits for the program to exit, bounded by its stopwaitsecs (outpost writes 30).
STOP_TIMEOUT = 120


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

    def __init__(self, socket_path, timeout):
        super().__init__()
        self.socket_path = socket_path
        self.timeout = timeout

    def make_connection(self, host):
        # get_host_info also turns user:password@ into the Authorization header.
        chost, self._extra_headers, _ = self.get_host_info(host)
        if self.socket_path:
            return _UnixConnection(self.socket_path, self.timeout)
        return http.client.HTTPConnection(chost, timeout=self.timeout)


def _read_config(conf_file):
    # supervisor's own reader: ; and # after white space start a comment.
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        with open(conf_file, encoding="utf-8") as stream:
            parser.read_file(stream)
    except (OSError, UnicodeError, configparser.Error) as err:
        raise SupervisorError(f"supervisor: cannot read {conf_file}: {err}") from None
    if not parser.has_section("supervisorctl"):
        raise SupervisorError(
            f"supervisor: {conf_file} has no [supervisorctl] section, which tells supervisorctl "
            "and outpost where supervisord listens"
        )
    return parser


def _expanded(parser, conf_file, name, default=None):
    """An option of [supervisorctl] with supervisor's expansions: %(here)s, %(ENV_X)s, %%."""
    value = parser.get("supervisorctl", name, fallback=default)
    if value is None:
        return None
    expansions = {f"ENV_{key}": text for key, text in os.environ.items()}
    expansions["here"] = os.path.dirname(os.path.abspath(conf_file))
    try:
        return value % expansions
    except (KeyError, ValueError, TypeError) as err:
        raise SupervisorError(
            f"supervisor: [supervisorctl] {name} in {conf_file} cannot be expanded: {err}"
        ) from None


def server_settings(conf_file):
    """Where and as whom supervisorctl would talk to the supervisord of ``conf_file``:
    ``(url, username, password)``, read as supervisorctl reads them."""
    parser = _read_config(conf_file)
    url = _expanded(parser, conf_file, "serverurl", "http://localhost:9001")
    if url.startswith("unix://"):
        url = "unix://" + os.path.normpath(os.path.abspath(os.path.expanduser(url[7:])))
    username = _expanded(parser, conf_file, "username")
    return url, username, _expanded(parser, conf_file, "password")


class Supervisor:
    """The supervisord of one configuration file; ``url`` names it without credentials."""

    def __init__(self, conf_file):
        self.url, username, password = server_settings(conf_file)
        self.conf_file = conf_file
        quote = urllib.parse.quote
        self._credentials = ""
        if username:
            self._credentials = f"{quote(username, safe='')}:{quote(password or '', safe='')}@"
        if self.url.startswith("unix://"):
            self._socket, self._netloc = self.url[len("unix://") :], "localhost"
            return
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SupervisorError(
                f"supervisor: serverurl {self.url!r} in {conf_file} is not unix:// or http://"
            )
        self._socket, self._netloc = None, parsed.netloc

    def call(self, method, *args, tolerate=(), timeout=CALL_TIMEOUT):
        """``supervisor.<method>(*args)``; a fault whose code is in ``tolerate`` returns None."""
        transport = _Transport(self._socket, timeout)
        proxy = xmlrpc.client.ServerProxy(
            f"http://{self._credentials}{self._netloc}/RPC2", transport
        )
        try:
            return getattr(proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode in tolerate:
                return None
            raise SupervisorError(f"supervisord refused {method}: {fault.faultString}") from None
        except xmlrpc.client.ProtocolError as err:
            # Its text would carry the credentials: say only what went wrong.
            raise SupervisorError(
                f"supervisord at {self.url} refused {method}: {err.errcode} {err.errmsg}"
            ) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ResponseError, ExpatError) as err:
            raise SupervisorError(
                f"supervisord at {self.url} ({self.conf_file}) does not answer {method}: {err}"
            ) from None
