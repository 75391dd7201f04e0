"""
A stand-in for cloudflared, the Cloudflare Tunnel connector, which cannot be installed here.

It takes the command line outpost starts cloudflared with and refuses any other flag, as
cloudflared's own parser does::

    cloudflared tunnel --no-autoupdate --config PATH --metrics ADDR run [--token TOKEN] [TUNNEL]
    cloudflared version

It reads the real config.yml and, like cloudflared:

- a remotely managed tunnel runs on a token (``--token`` or ``TUNNEL_TOKEN``) of the right shape,
  and takes its ingress from "Cloudflare": the JSON list in the file named by
  ``OUTPOST_STANDIN_REMOTE_INGRESS`` (none: every request gets 503);
- a locally managed one needs ``tunnel`` and a ``credentials-file`` naming that tunnel, and takes
  its ingress from config.yml;
- it refuses ingress whose last rule is not a catch-all, and serves ``/ready`` and ``/metrics``
  on the metrics address.

Cloudflare's edge is played by an HTTP listener on ``OUTPOST_STANDIN_EDGE`` (``127.0.0.1:PORT``):
a request there goes to the origin the ingress rules choose by Host header and path, or gets the
catch-all's ``http_status``. ``POST /standin/lose-edge`` on the metrics address cuts the edge
off (``/ready`` answers 503, the edge 530) and ``POST /standin/regain-edge`` brings it back.

It never prints the token.
"""

import base64
import binascii
import http.client
import http.server
import json
import os
import re
import signal
import sys
import threading
import uuid

import yaml

VERSION = os.environ.get("OUTPOST_STANDIN_VERSION", "2025.8.1")
CONNECTIONS = 4
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
TUNNEL_FLAGS = {"--no-autoupdate": False, "--config": True, "--metrics": True}
RUN_FLAGS = {"--token": True}


class UsageError(Exception):
    pass


def parse_args(argv):
    """The flags cloudflared would take for ``tunnel ... run``; anything else is refused."""
    if argv[:1] == ["version"] or argv[:1] == ["--version"]:
        return {"command": "version"}
    if argv[:1] != ["tunnel"]:
        raise UsageError(f"unknown command {argv[:1]}")
    options = {"command": "run", "tunnel": None}
    rest = _take_flags(argv[1:], TUNNEL_FLAGS, options)
    if rest[:1] != ["run"]:
        raise UsageError("expected the subcommand run after the tunnel flags")
    rest = _take_flags(rest[1:], RUN_FLAGS, options)
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments after run: {len(rest)}")
    options["tunnel"] = rest[0] if rest else None
    return options


def _take_flags(args, known, options):
    while args and args[0].startswith("-"):
        flag, _, inline = args[0].partition("=")
        if flag not in known:
            raise UsageError(f"flag provided but not defined: {flag}")
        if known[flag]:
            if inline:
                options[flag] = inline
                args = args[1:]
            elif len(args) < 2:
                raise UsageError(f"flag needs an argument: {flag}")
            else:
                options[flag] = args[1]
                args = args[2:]
        else:
            options[flag] = True
            args = args[1:]
    return args


def parse_token(token):
    try:
        fields = json.loads(base64.b64decode(token, validate=True))
        uuid.UUID(fields["t"])
        base64.b64decode(fields["s"], validate=True)
        if not fields["a"]:
            raise ValueError("no account")
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None
    return fields


class Tunnel:
    """The connector's state: its ingress rules and whether it holds its edge connections."""

    def __init__(self, rules):
        self.rules = rules
        self.connected = True
        self.requests = 0
        self.lock = threading.Lock()

    def choose(self, host, path):
        host = host.split(":", 1)[0].lower()
        for rule in self.rules:
            if _host_matches(rule.get("hostname"), host) and (
                "path" not in rule or re.search(rule["path"], path)
            ):
                return rule
        return {"service": "http_status:503"}


def _host_matches(pattern, host):
    if pattern in (None, "", "*"):
        return True
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def check_ingress(rules):
    if not isinstance(rules, list) or not rules:
        return "no ingress rules"
    last = rules[-1]
    if last.get("hostname") not in (None, "", "*") or "path" in last:
        return (
            "The last ingress rule must match all URLs "
            "(i.e. it should not have a hostname or path filter)"
        )
    return None


def metrics_handler(tunnel):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            if self.path == "/ready":
                connections = CONNECTIONS if tunnel.connected else 0
                status = 200 if tunnel.connected else 503
                body = {
                    "status": status,
                    "readyConnections": connections,
                    "connectorId": CONNECTOR_ID,
                }
                self._answer(status, "application/json", json.dumps(body))
            elif self.path == "/metrics":
                lines = [
                    "# HELP cloudflared_tunnel_ha_connections Number of active ha connections",
                    "# TYPE cloudflared_tunnel_ha_connections gauge",
                    f"cloudflared_tunnel_ha_connections {CONNECTIONS if tunnel.connected else 0}",
                    "# TYPE cloudflared_tunnel_total_requests counter",
                    f"cloudflared_tunnel_total_requests {tunnel.requests}",
                    "# TYPE build_info gauge",
                    f'build_info{{goversion="standin",type="standin",version="{VERSION}"}} 1',
                ]
                self._answer(200, "text/plain; version=0.0.4", "\n".join(lines) + "\n")
            else:
                self._answer(404, "text/plain", "404 page not found\n")

        def do_POST(self):  # noqa: N802 - the name http.server calls
            if self.path == "/standin/lose-edge":
                tunnel.connected = False
                log("ERR Lost connection to the edge (told so by the test)")
            elif self.path == "/standin/regain-edge":
                tunnel.connected = True
                log("INF Registered tunnel connection again")
            else:
                self._answer(404, "text/plain", "404 page not found\n")
                return
            self._answer(200, "text/plain", "ok\n")

        def _answer(self, status, content_type, text):
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            pass

    return Handler


def edge_handler(tunnel):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if not tunnel.connected:
                self._answer(530, b"error code: 1033\n")
                return
            with tunnel.lock:
                tunnel.requests += 1
            rule = tunnel.choose(self.headers.get("Host", ""), self.path.split("?", 1)[0])
            service = rule["service"]
            if service.startswith("http_status:"):
                self._answer(int(service.split(":", 1)[1]), b"")
                return
            scheme, _, address = service.partition("://")
            address = address.rstrip("/")
            connection_class = (
                http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            )
            headers = {
                key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP
            }
            try:
                origin = connection_class(address, timeout=10)
                origin.request(self.command, self.path, body=body, headers=headers)
                answer = origin.getresponse()
                data = answer.read()
            except OSError as err:
                log(f"ERR Request failed error={err!s} originService={service}")
                self._answer(502, b"Bad Gateway\n")
                return
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

        def _answer(self, status, data):
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            pass

    return Handler


CONNECTOR_ID = str(uuid.uuid4())


def log(line):
    print(line, file=sys.stderr, flush=True)


def fail(message):
    log(f"ERR {message}")
    return 1


def split_address(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def main(argv):
    try:
        options = parse_args(argv)
    except UsageError as err:
        log(f"Incorrect Usage: {err}")
        return 2
    if options["command"] == "version":
        print(f"cloudflared version {VERSION} (built stand-in)")
        return 0
    if "--no-autoupdate" not in options:
        return fail("the stand-in expects --no-autoupdate: outpost turns self-update off")
    if "--config" not in options:
        return fail("the stand-in expects an explicit --config")
    try:
        with open(options["--config"], encoding="utf-8") as stream:
            config = yaml.safe_load(stream) or {}
    except OSError as err:
        return fail(f"Cannot read the configuration file: {err}")

    token = options.get("--token") or os.environ.get("TUNNEL_TOKEN")
    if token:
        if parse_token(token) is None:
            return fail("Provided Tunnel token is not valid.")
        rules = []
        remote = os.environ.get("OUTPOST_STANDIN_REMOTE_INGRESS")
        if remote and os.path.exists(remote):
            with open(remote, encoding="utf-8") as stream:
                rules = json.load(stream)
        log("INF Starting tunnel on a token: ingress comes from Cloudflare")
    else:
        tunnel_id = options["tunnel"] or config.get("tunnel")
        if not tunnel_id:
            return fail('no tunnel given: "cloudflared tunnel run" needs a token or a tunnel')
        try:
            with open(config["credentials-file"], encoding="utf-8") as stream:
                credentials = json.load(stream)
        except (KeyError, OSError, ValueError) as err:
            return fail(f"Tunnel credentials file could not be read: {err!s}")
        if credentials.get("TunnelID") != tunnel_id or not credentials.get("TunnelSecret"):
            return fail("Tunnel credentials file does not belong to this tunnel")
        rules = config.get("ingress") or []
        problem = check_ingress(rules)
        if problem:
            return fail(problem)
        log(f"INF Starting tunnel tunnelID={tunnel_id}")

    tunnel = Tunnel(rules)
    metrics = options.get("--metrics") or config.get("metrics") or "127.0.0.1:20241"
    servers = [http.server.ThreadingHTTPServer(split_address(metrics), metrics_handler(tunnel))]
    log(f"INF Starting metrics server on {metrics}/metrics")
    edge = os.environ.get("OUTPOST_STANDIN_EDGE")
    if edge:
        servers.append(http.server.ThreadingHTTPServer(split_address(edge), edge_handler(tunnel)))
        log(f"INF Edge stand-in listening on {edge}")
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"INF Registered tunnel connection connIndex=0 (stand-in, {CONNECTIONS} connections)")

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    while not stopped.wait(0.5):
        pass
    log("INF Initiating graceful shutdown")
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
