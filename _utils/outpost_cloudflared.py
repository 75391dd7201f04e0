"""
cloudflared, the Cloudflare Tunnel connector, on a client: the pinned binary, its configuration,
its service and its readiness.

Layout under the outpost root (``C:\\outpost`` on Windows, ``/opt/outpost`` elsewhere)::

    bin/cloudflared[.exe]          the pinned binary, moved in only after its sha256 matched
    bin/cloudflared.json           the version and sha256 of that binary
    cloudflared/config.yml         what the service is started with (``--config``)
    cloudflared/credentials.json   locally managed tunnels: written from the token, owner-only
    cloudflared/applied.json       digest of the config.yml the connector was last started with
    cloudflared/logs/              the connector's output

The service (``outpost-cloudflared``) runs through the outpost service backend, with the config
path on its command line and self-update off. A remotely managed tunnel gets its token through the
environment variable ``TUNNEL_TOKEN``, from a service definition only the service's own account
and administrators can read; the token is never on a command line, in a log line, an error
message or a return value. Nothing here talks to Salt's loader: the execution module is the
adapter.
"""

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import ntpath
import os
import re
import shlex
import time
import uuid
import xml.etree.ElementTree as ET

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

# Synced _utils are importable by their bare name while Salt's loader loads a module.
import outpost_health
import outpost_release
import outpost_service
import outpost_service_windows

log = logging.getLogger(__name__)

SERVICE_NAME = "outpost-cloudflared"
DEFAULT_METRICS = "127.0.0.1:20241"
DEFAULT_TOKEN_PILLAR = "outpost:cloudflared:token"  # noqa: S105 - where it is, not what
# Apps bind this literal address; "localhost" may resolve to ::1 where nothing listens.
LOOPBACK = "127.0.0.1"
# cloudflared waits up to its --grace-period (30 s by default) for requests in flight when told
# to stop; the service manager must wait longer than that before it kills it.
STOP_TIMEOUT = 45
READY_TIMEOUT = 30
READY_PAUSE = 0.25
CONFIG_HEADER = (
    "# Written by outpost (cloudflared.configured); changes made here are overwritten.\n"
)

# What `cloudflared service install` leaves on Windows; a half-finished install leaves the
# event-log key alone and blocks the next one: https://github.com/cloudflare/cloudflared/issues/1498
LEGACY_SERVICE = "Cloudflared"
LEGACY_EVENT_LOG_HIVE = "HKLM"
LEGACY_EVENT_LOG_KEY = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\Cloudflared"

RULE_KEYS = ("hostname", "path", "service", "originRequest", "app")
HOSTNAME = re.compile(
    r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
)
HTTP_STATUS = re.compile(r"http_status:([1-5][0-9][0-9])")
ORIGIN = re.compile(r"(https?)://127\.0\.0\.1:([0-9]{1,5})/?")
PORT = re.compile(r"[0-9]{1,5}")
# Go durations as cloudflared reads them ("30s", "1m30s"); plain integers count as seconds.
DURATION = re.compile(r"(?:[0-9]{1,6}(?:ns|us|ms|s|m|h))+")
# originRequest settings that only tune the connection to the loopback origin. Anything else
# (bastionMode, proxyType, proxyAddress, access...) turns the tunnel into a way elsewhere.
ORIGIN_REQUEST_KEYS = {
    "connectTimeout": "duration",
    "tlsTimeout": "duration",
    "tcpKeepAlive": "duration",
    "keepAliveTimeout": "duration",
    "keepAliveConnections": "count",
    "noHappyEyeballs": "flag",
    "disableChunkedEncoding": "flag",
    "http2Origin": "flag",
    "httpHostHeader": "hostname",
    "originServerName": "hostname",
    # Only false: verification of an https origin must never be switched off.
    "noTLSVerify": "false",
}
# Paths that match every request path: a rule with one is as much a catch-all as one without.
EVERY_PATH = frozenset(
    ["^", "^/", "^.*", "^.+", "^/.*", "^/?", "^/?.*", "^.*$", "^.+$", "^/.*$", "^/?.*$", "^.*/"]
)
METRICS = re.compile(r"127\.0\.0\.1:([0-9]{1,5})")
# A secret is only ever reported as changed: never its value, length or digest.
CHANGED = "changed"
SHAPE_ERROR = "token: not a Cloudflare tunnel token (base64 of a JSON object with a, t and s)"


class CloudflaredError(CommandExecutionError):
    """cloudflared could not be installed, configured, started or checked."""


# -- the layout -------------------------------------------------------------------------------


class Layout:
    """Where cloudflared's files live under the outpost root: machine-wide, one of each."""

    def __init__(self, root, windows=False):
        self.root = root
        self.windows = windows
        self.bin_dir = os.path.join(root, "bin")
        self.binary = os.path.join(self.bin_dir, "cloudflared.exe" if windows else "cloudflared")
        self.binary_record = os.path.join(self.bin_dir, "cloudflared.json")
        self.staging_dir = os.path.join(self.bin_dir, ".staging")
        self.config_dir = os.path.join(root, "cloudflared")
        self.config_path = os.path.join(self.config_dir, "config.yml")
        self.credentials_path = os.path.join(self.config_dir, "credentials.json")
        self.marker_path = os.path.join(self.config_dir, "applied.json")
        self.log_dir = os.path.join(self.config_dir, "logs")

    def stage_path(self, version):
        os.makedirs(self.staging_dir, exist_ok=True)
        return os.path.join(self.staging_dir, f"cloudflared-{version}")


def refuse_user_profile(root):
    """The service runs as LocalSystem, whose profile is not the administrator's: a config under
    any profile is one cloudflared's service never reads."""
    folded = ntpath.normcase(ntpath.normpath(str(root)))
    drive, rest = ntpath.splitdrive(folded)
    if rest.startswith("\\users\\") or "\\config\\systemprofile" in rest:
        raise SaltInvocationError(
            f"root: {root} is under a user profile; cloudflared's files must be machine-wide, "
            "e.g. C:\\outpost"
        )
    if not drive:
        raise SaltInvocationError(f"root: {root} is not an absolute Windows path")


# -- the token --------------------------------------------------------------------------------


def parse_token(token):
    """The fields of a tunnel token (``a`` account, ``t`` tunnel id, ``s`` secret).

    Raises naming ``token``; the value never appears in a message or a chained exception.
    """
    try:
        fields = json.loads(base64.b64decode(str(token).strip(), validate=True))
        secret = base64.b64decode(fields["s"], validate=True)
        tunnel = str(uuid.UUID(fields["t"]))
        account = fields["a"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise SaltInvocationError(SHAPE_ERROR) from None
    if not isinstance(account, str) or not account or len(secret) < 32:
        raise SaltInvocationError(SHAPE_ERROR)
    return {"a": account, "t": tunnel, "s": fields["s"]}


def looks_like_token(text):
    try:
        parse_token(text)
    except SaltInvocationError:
        return False
    return True


def credentials_text(token):
    """The credentials file of a locally managed tunnel holds what its token holds."""
    fields = parse_token(token)
    document = {"AccountTag": fields["a"], "TunnelSecret": fields["s"], "TunnelID": fields["t"]}
    return json.dumps(document, sort_keys=True) + "\n"


# -- settings ---------------------------------------------------------------------------------


def validate_tunnel(tunnel):
    try:
        return str(uuid.UUID(str(tunnel)))
    except ValueError:
        raise SaltInvocationError(f"tunnel: {tunnel!r} is not a tunnel UUID") from None


def validate_metrics(metrics):
    """The metrics server also serves Go's profiler: it listens on loopback only."""
    found = METRICS.fullmatch(str(metrics))
    if not found or not 1 <= int(found.group(1)) <= 65535:
        raise SaltInvocationError(
            f"metrics: {metrics!r} must be 127.0.0.1:<port>; the metrics server is not for "
            "other hosts"
        )
    return str(metrics)


def validate_ingress(rules, apps=None):
    """Check ingress rules before anything is written; return them as config.yml gets them.

    ``apps`` maps the names of the apps outpost runs here to their ports. A rule may name its
    app (``app: hello``) instead of, or beside, its ``service``. Every error names the rule as
    ``ingress[<index>]``.
    """
    apps = _check_app_ports(apps or {})
    if not isinstance(rules, list) or not rules:
        raise SaltInvocationError("ingress: expected a list of rules ending in a catch-all")
    checked = [_check_rule(index, rule, apps) for index, rule in enumerate(rules)]

    last = len(checked) - 1
    for index, rule in enumerate(checked[:last]):
        if _is_catch_all(rule) or _matches_everything(rule):
            raise SaltInvocationError(
                f"ingress[{index}]: a catch-all (no hostname, a path matching every path or "
                "none) before the last rule hides every rule after it"
            )
    if not _is_catch_all(checked[last]):
        raise SaltInvocationError(
            f"ingress[{last}]: the last rule must be a catch-all with no hostname and no path, "
            "e.g. service: http_status:404"
        )
    for later, rule in enumerate(checked):
        for earlier in range(later):
            if _shadows(checked[earlier], rule):
                raise SaltInvocationError(
                    f"ingress[{later}]: never reached, since ingress[{earlier}] "
                    f"({_describe_match(checked[earlier])}) matches every request it would"
                )
    return checked


def _check_app_ports(apps):
    if not isinstance(apps, dict):
        raise SaltInvocationError("apps: expected a mapping of app name to port")
    checked = {}
    for name, port in apps.items():
        text = str(port)
        if isinstance(port, bool) or not PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
            raise SaltInvocationError(
                f"apps: {name}: port {port!r} is not an integer from 1 to 65535"
            )
        checked[name] = int(text)
    return checked


def _check_origin_request(where, options):
    if not isinstance(options, dict):
        raise SaltInvocationError(f"{where}: originRequest must be a mapping")
    for key, value in options.items():
        kind = ORIGIN_REQUEST_KEYS.get(key)
        if kind is None:
            allowed = ", ".join(sorted(ORIGIN_REQUEST_KEYS))
            raise SaltInvocationError(
                f"{where}: originRequest.{key} is not allowed; outpost admits only {allowed}"
            )
        if not _fits(kind, value):
            raise SaltInvocationError(
                f"{where}: originRequest.{key}: {value!r} is not {ORIGIN_REQUEST_KINDS[kind]}"
            )
    return dict(options)


ORIGIN_REQUEST_KINDS = {
    "duration": "a duration such as 30s or 1m30s",
    "count": "a whole number",
    "flag": "true or false",
    "hostname": "a host name",
    "false": "false (outpost never turns TLS verification off)",
}


def _fits(kind, value):
    if kind == "duration":
        is_seconds = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return is_seconds or (isinstance(value, str) and bool(DURATION.fullmatch(value)))
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "hostname":
        return isinstance(value, str) and bool(HOSTNAME.fullmatch(value.lower()))
    return value is False


def _check_rule(index, rule, apps):
    where = f"ingress[{index}]"
    if not isinstance(rule, dict):
        raise SaltInvocationError(f"{where}: expected a mapping with hostname, path and service")
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        raise SaltInvocationError(f"{where}: unknown key {unknown[0]!r}")

    checked = {}
    if "hostname" in rule:
        hostname = str(rule["hostname"]).lower()
        if hostname != "*" and not HOSTNAME.fullmatch(hostname):
            raise SaltInvocationError(
                f"{where}: hostname {rule['hostname']!r} is not a host name (a wildcard only as "
                "the first label, as in *.example.com; no port)"
            )
        checked["hostname"] = hostname
    if "path" in rule:
        checked["path"] = _check_path(where, rule["path"])
    service = _check_service(where, rule, apps)
    checked["service"] = service
    if "originRequest" in rule:
        checked["originRequest"] = _check_origin_request(where, rule["originRequest"])
    return checked


def _check_path(where, path):
    """cloudflared searches the whole request path with the regular expression: unanchored,
    ``/api`` would also match ``/static/api``."""
    if not isinstance(path, str) or not path.startswith("^"):
        raise SaltInvocationError(
            f"{where}: path {path!r} must be anchored with ^, or it matches anywhere in a path"
        )
    # Python's syntax stands in for Go's RE2 here; RE2 also lacks backreferences and lookaround.
    try:
        re.compile(path)
    except re.error as err:
        raise SaltInvocationError(
            f"{where}: path {path!r} is not a regular expression: {err}"
        ) from None
    return path


def _check_service(where, rule, apps):
    app = rule.get("app")
    if app is not None and app not in apps:
        known = ", ".join(sorted(apps)) or "none"
        raise SaltInvocationError(
            f"{where}: app {app!r} is not an app outpost runs on this client (known: {known})"
        )
    service = rule.get("service")
    if service is None:
        if app is None:
            raise SaltInvocationError(f"{where}: service is required (or app: <name>)")
        return f"http://{LOOPBACK}:{apps[app]}"

    service = str(service)
    if HTTP_STATUS.fullmatch(service):
        if app is not None:
            raise SaltInvocationError(f"{where}: app {app} is named, but service answers itself")
        return service
    found = ORIGIN.fullmatch(service)
    if not found or not 1 <= int(found.group(2)) <= 65535:
        hint = ""
        if "localhost" in service.lower():
            hint = "; localhost may resolve to ::1, where apps do not listen"
        raise SaltInvocationError(
            f"{where}: service {service!r} must be http://{LOOPBACK}:<port>, the address outpost "
            f"apps bind to, or http_status:<code>{hint}"
        )
    port = int(found.group(2))
    if app is not None and port != int(apps[app]):
        raise SaltInvocationError(
            f"{where}: service {service} is not where {app} listens (port {apps[app]})"
        )
    if app is None and apps and port not in {int(value) for value in apps.values()}:
        listening = ", ".join(f"{name} on {value}" for name, value in sorted(apps.items()))
        raise SaltInvocationError(
            f"{where}: no outpost app on this client listens on port {port} ({listening})"
        )
    return service


def _is_catch_all(rule):
    return rule.get("hostname", "*") == "*" and "path" not in rule


def _matches_every_path(rule):
    return "path" not in rule or rule["path"] in EVERY_PATH


def _matches_everything(rule):
    return rule.get("hostname", "*") == "*" and _matches_every_path(rule)


def _covers_host(earlier, later):
    """Whether every host ``later`` matches is matched by ``earlier``, as cloudflared matches:
    equal names, or ``*.example.com`` as a suffix of the request's host."""
    if earlier in (None, "*"):
        return True
    if later in (None, "*"):
        return False
    return earlier == later or (earlier.startswith("*.") and later.endswith(earlier[1:]))


def _shadows(earlier, later):
    return _covers_host(earlier.get("hostname"), later.get("hostname")) and (
        _matches_every_path(earlier) or earlier["path"] == later.get("path")
    )


def _describe_match(rule):
    parts = [f"hostname {rule.get('hostname', '*')}"]
    if "path" in rule:
        parts.append(f"path {rule['path']}")
    return ", ".join(parts)


def render_config(layout, metrics, tunnel=None, ingress=None):
    """config.yml: locally managed tunnels carry their ingress here, remotely managed ones get
    theirs from Cloudflare and have none."""
    document = {}
    if tunnel:
        document["tunnel"] = tunnel
        document["credentials-file"] = layout.credentials_path
    document["metrics"] = metrics
    document["no-autoupdate"] = True
    if tunnel:
        document["ingress"] = ingress
    return CONFIG_HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def config_changes(old_text, new_text):
    """The top-level keys of config.yml that differ, as ``{key: {"old", "new"}}``."""
    if old_text == new_text:
        return {}
    if old_text is None:
        return {"config.yml": {"old": None, "new": "written"}}
    try:
        old = yaml.safe_load(old_text) or {}
    except yaml.YAMLError:
        old = None
    if not isinstance(old, dict):
        return {"config.yml": {"old": "unreadable", "new": "written"}}
    new = yaml.safe_load(new_text)
    changes = {
        key: {"old": old.get(key), "new": new.get(key)}
        for key in dict.fromkeys([*new, *old])
        if old.get(key) != new.get(key)
    }
    return changes or {"config.yml": {"old": "other text", "new": "written"}}


# -- files ------------------------------------------------------------------------------------


def read_text(path):
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def read_config(layout):
    text = read_text(layout.config_path)
    if text is None:
        raise CloudflaredError(
            f"config.yml: there is none at {layout.config_path}; apply cloudflared.configured first"
        )
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise CloudflaredError(f"config.yml: {layout.config_path} is not YAML: {err}") from err
    return document


def sha256_text(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None


def write_private(path, text):
    """Owner-only on POSIX; on Windows the folder's ACL (set by the backend) is what counts."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    outpost_release.write_atomically(path, text, mode=0o600)


# -- the binary -------------------------------------------------------------------------------


def binary_record(layout):
    text = read_text(layout.binary_record)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def binary_sha256(layout):
    if not os.path.isfile(layout.binary):
        return None
    return outpost_release.sha256_of(layout.binary)


def put_binary(layout, staged, version, sha256):
    """Move a checked download into place; the record follows the binary."""
    os.chmod(staged, 0o755)  # noqa: S103 - a program every account may run; only root writes
    os.replace(staged, layout.binary)
    return record_binary(layout, version, sha256)


def record_binary(layout, version, sha256):
    record = {
        "version": version,
        "sha256": sha256,
        "path": layout.binary,
        "installed_at": outpost_release.now_iso(),
    }
    outpost_release.write_atomically(layout.binary_record, json.dumps(record, indent=2) + "\n")
    return record


# -- readiness --------------------------------------------------------------------------------


def probe_ready(metrics, timeout=2.0):
    """One request to ``/ready``. Returns ``(ready, reason, connections)``; never raises.

    cloudflared answers 200 only while it holds connections to Cloudflare's edge; the count is
    checked as well, so a 200 from something else on that port does not pass.
    """
    url = f"http://{metrics}/ready"
    try:
        status, body = outpost_health.fetch(url, timeout=timeout)
    except outpost_health.Unreachable as err:
        return False, f"{url} unreachable: {err}", None
    connections = _ready_connections(body)
    if status == 200 and connections:
        return True, f"{url}: {connections} connections to Cloudflare's edge", connections
    return False, f"{url} answered HTTP {status} with {connections} ready connections", connections


def _ready_connections(body):
    """The count cloudflared reports, or None: a count is a whole number, not ``true``."""
    try:
        count = json.loads(body).get("readyConnections")
    except (ValueError, AttributeError):
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return None
    return count


def wait_ready(metrics, deadline_seconds=READY_TIMEOUT, still_running=None):
    """Probe until ready or the deadline passes. Returns ``(ready, reason)``."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        ready, reason, _ = probe_ready(metrics)
        if ready:
            return True, reason
        if still_running is not None and not still_running():
            return False, f"{reason}; the service is not running"
        if time.monotonic() + READY_PAUSE > deadline:
            return False, f"{reason} (gave up after {deadline_seconds:g}s)"
        time.sleep(READY_PAUSE)


# -- the service definition -------------------------------------------------------------------


def service_command(layout, metrics):
    return [
        layout.binary,
        "tunnel",
        "--no-autoupdate",
        "--config",
        layout.config_path,
        "--metrics",
        metrics,
        "run",
    ]


def service_spec(layout, metrics, token=None):
    env = {"TUNNEL_TOKEN": token} if token else {}
    return outpost_service.ServiceSpec(
        name=SERVICE_NAME,
        display_name="outpost cloudflared",
        command=service_command(layout, metrics),
        env=env,
        workdir=layout.config_dir,
        log_dir=layout.log_dir,
        stop_timeout=STOP_TIMEOUT,
    )


def split_windows_args(text):
    """Split a command line the way CommandLineToArgvW does for the arguments after the first."""
    args, current, in_word, quoted, slashes = [], [], False, False, 0
    for char in text:
        if char == "\\":
            slashes, in_word = slashes + 1, True
            continue
        if char == '"':
            current.append("\\" * (slashes // 2))
            if slashes % 2:
                current.append('"')
            else:
                quoted = not quoted
            slashes, in_word = 0, True
            continue
        current.append("\\" * slashes)
        slashes = 0
        if char in " \t" and not quoted:
            if in_word:
                args.append("".join(current))
            current, in_word = [], False
            continue
        current.append(char)
        in_word = True
    current.append("\\" * slashes)
    if in_word:
        args.append("".join(current))
    return args


def _parse_definition(kind, text):
    """The command and (opaque) environment of a definition as the backend writes it."""
    if kind == "windows":
        # Our own file, written by the backend and readable by administrators only.
        root = ET.fromstring(text)  # noqa: S314
        command = [root.findtext("executable") or ""]
        command += split_windows_args(root.findtext("arguments") or "")
        env = sorted((entry.get("name"), entry.get("value")) for entry in root.findall("env"))
        return {"command": command, "env": json.dumps(env)}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("["):
            fields[key] = value
    command = shlex.split(fields.get("command", "").replace("%%", "%"))
    return {"command": command, "env": fields.get("environment", "")}


def _rendered(backend, spec):
    if backend.kind == "windows":
        return outpost_service_windows.render_xml(spec).decode("utf-8")
    return backend.render(spec)


def _definition_path(backend, name):
    if backend.kind == "windows":
        return backend.xml_path(name)
    return backend.program_path(name)


def registered(backend, name=SERVICE_NAME):
    """The definition on disk the service manager starts ``name`` from, or None."""
    text = read_text(_definition_path(backend, name))
    if text is None:
        return None
    return dict(_parse_definition(backend.kind, text), text=text)


def definition_changes(backend, spec):
    """What defining ``spec`` would change, with the environment reported only as changed."""
    current = registered(backend, spec.name)
    text = _rendered(backend, spec)
    wanted = _parse_definition(backend.kind, text)
    if current is None:
        changes = {"command": {"old": None, "new": wanted["command"]}}
        if spec.env:
            changes["token"] = CHANGED
        return changes
    if current["text"] == text:
        return {}
    changes = {}
    if current["command"] != wanted["command"]:
        changes["command"] = {"old": current["command"], "new": wanted["command"]}
    if current["env"] != wanted["env"]:
        changes["token"] = CHANGED
    return changes or {"definition": "updated"}


def command_problems(command, layout):
    """What is wrong with a registered command line, in words that never quote a token."""
    problems = []
    if any(_is_token_argument(arg) for arg in command):
        problems.append("it carries a tunnel token, which every local user can read there")
    if not command or command[0] != layout.binary:
        problems.append(f"it does not start {layout.binary}")
    if "--no-autoupdate" not in command:
        problems.append("it lacks --no-autoupdate, so cloudflared would replace itself")
    config_at = command.index("--config") + 1 if "--config" in command else len(command)
    if command[config_at : config_at + 1] != [layout.config_path]:
        problems.append(f"it lacks --config {layout.config_path}")
    return problems


def _is_token_argument(arg):
    return arg == "--token" or arg.startswith("--token=") or looks_like_token(arg)


def check_registration(backend, layout, salt_funcs):
    """Read the registered command line back and refuse one without ``--config`` or with a token.

    On Windows the Service Control Manager's own record (``BinaryPath``) is checked too: it must
    start the WinSW wrapper, which reads the command from the protected XML.
    """
    current = registered(backend)
    if current is None:
        raise CloudflaredError(f"service {SERVICE_NAME} has no definition after it was defined")
    problems = command_problems(current["command"], layout)
    if backend.kind == "windows":
        binary_path = str(salt_funcs["service.info"](SERVICE_NAME).get("BinaryPath") or "")
        if any(_is_token_argument(arg) for arg in split_windows_args(binary_path)):
            problems.append("its BinaryPath carries a tunnel token, which every local user reads")
        elif not _same_windows_path(_first_word(binary_path), backend.wrapper_path(SERVICE_NAME)):
            problems.append(f"its BinaryPath does not start {backend.wrapper_path(SERVICE_NAME)}")
    if problems:
        raise CloudflaredError(
            f"service {SERVICE_NAME}: the registered command line is wrong: " + "; ".join(problems)
        )
    return current["command"]


def _first_word(command):
    command = command.strip()
    if command.startswith('"'):
        return command[1:].split('"', 1)[0]
    return command.split(" ", 1)[0]


def _same_windows_path(left, right):
    return ntpath.normcase(ntpath.normpath(left)) == ntpath.normcase(ntpath.normpath(right))


# -- the connector ----------------------------------------------------------------------------


class Connector:
    """cloudflared's service on one client: plan, apply and check it."""

    def __init__(self, layout, backend, salt_funcs):
        self.layout = layout
        self.backend = backend
        self.salt = salt_funcs

    # -- reading ----------------------------------------------------------------------------

    def settings(self, token):
        """What the service should be, from config.yml and the token. Checks both first."""
        config = read_config(self.layout)
        fields = parse_token(token)
        metrics = validate_metrics(config.get("metrics", DEFAULT_METRICS))
        tunnel = config.get("tunnel")
        if tunnel and fields["t"] != validate_tunnel(tunnel):
            raise SaltInvocationError(
                "token: it belongs to another tunnel than the one config.yml names"
            )
        # A locally managed tunnel reads its credentials file; only a remotely managed one
        # needs the token in its environment.
        spec = service_spec(self.layout, metrics, token=None if tunnel else str(token).strip())
        self.backend.validate(spec)
        credentials = credentials_text(token) if tunnel else None
        return {"metrics": metrics, "spec": spec, "credentials": credentials}

    def status(self):
        return self.backend.status(SERVICE_NAME)

    def applied_config(self):
        text = read_text(self.layout.marker_path)
        try:
            return json.loads(text).get("config_sha256") if text else None
        except ValueError:
            return None

    def leftovers(self):
        """What an earlier cloudflared install left that would get in the way (Windows)."""
        if not self.layout.windows:
            return []
        found = []
        if self._legacy_service():
            found.append(f"service {LEGACY_SERVICE}")
        if self.salt["reg.key_exists"](LEGACY_EVENT_LOG_HIVE, LEGACY_EVENT_LOG_KEY):
            found.append(f"event log source {LEGACY_SERVICE}")
        return found

    def _legacy_service(self):
        if not self.salt["service.available"](LEGACY_SERVICE):
            return False
        info = self.salt["service.info"](LEGACY_SERVICE)
        # Only cloudflared's own registration: never a stranger that happens to share the name.
        return "cloudflared" in str(info.get("BinaryPath") or "").lower()

    def plan(self, token):
        """What ``apply`` would change; the token is only ever reported as changed."""
        if read_text(self.layout.config_path) is None:
            # A dry run of a first install: config.yml is still to be written by
            # cloudflared.configured, so only the token's shape and the start can be told.
            parse_token(token)
            return {
                "config": f"{self.layout.config_path} is still to be written",
                "service": {"old": self.status()["state"], "new": "RUNNING"},
            }
        return self._plan(self.settings(token))

    def _plan(self, wanted):
        plan = {}
        leftovers = self.leftovers()
        if leftovers:
            plan["leftovers"] = leftovers
        plan.update(definition_changes(self.backend, wanted["spec"]))
        current_credentials = read_text(self.layout.credentials_path)
        if wanted["credentials"] is not None and current_credentials != wanted["credentials"]:
            plan["token"] = CHANGED
        if wanted["credentials"] is None and current_credentials is not None:
            plan["credentials"] = "removed"

        status = self.status()
        if not status["running"]:
            plan["service"] = {"old": status["state"], "new": "RUNNING"}
        elif not plan:
            if self.applied_config() != sha256_text(read_text(self.layout.config_path)):
                plan["restart"] = "config.yml changed since the connector started"
            else:
                ready, reason, _ = probe_ready(wanted["metrics"])
                if not ready:
                    plan["ready"] = {"old": f"not ready: {reason}", "new": "ready"}
        return plan

    # -- changing ---------------------------------------------------------------------------

    def apply(self, token, ready_timeout=READY_TIMEOUT):
        """Bring the service in line with config.yml and the token, then wait until ready."""
        wanted = self.settings(token)
        plan = self._plan(wanted)
        if not plan:
            return plan
        if not os.path.isfile(self.layout.binary):
            raise CloudflaredError(
                f"cloudflared is not installed at {self.layout.binary}; apply "
                "cloudflared.installed first"
            )
        if "leftovers" in plan:
            self.clear_leftovers()
        if wanted["credentials"] is not None:
            write_private(self.layout.credentials_path, wanted["credentials"])
        elif "credentials" in plan:
            os.remove(self.layout.credentials_path)

        spec = wanted["spec"]
        changed = self.backend.define(spec)
        self.backend.apply(spec.name)
        # Loading a changed definition restarts the service (supervisord may leave the start
        # to its next tick: start it now); anything else in the plan needs a restart here.
        if not changed:
            self.backend.restart(spec.name)
        elif not self.status()["running"]:
            self.backend.start(spec.name)
        self._record_started()
        log.info("started cloudflared: %s", ", ".join(sorted(plan)))

        check_registration(self.backend, self.layout, self.salt)
        self.require_ready(wanted["metrics"], ready_timeout)
        return plan

    def restart(self, ready_timeout=READY_TIMEOUT):
        metrics = validate_metrics(read_config(self.layout).get("metrics", DEFAULT_METRICS))
        if registered(self.backend) is None:
            raise CloudflaredError(
                f"service {SERVICE_NAME} is not defined; apply cloudflared.running"
            )
        self.backend.restart(SERVICE_NAME)
        self._record_started()
        log.info("restarted cloudflared")
        self.require_ready(metrics, ready_timeout)

    def require_ready(self, metrics, ready_timeout=READY_TIMEOUT):
        ready, reason = wait_ready(
            metrics,
            deadline_seconds=float(ready_timeout),
            still_running=lambda: (
                self.status()["state"] not in ("FATAL", "EXITED", "STOPPED", "ABSENT")
            ),
        )
        if not ready:
            raise CloudflaredError(
                f"cloudflared started but is not ready: {reason}; see {self.layout.log_dir}"
            )
        return reason

    def clear_leftovers(self):
        """Remove what ``cloudflared service install`` left: its service (which would run a
        second connector, self-updating, with the token on its command line) and its event-log
        key."""
        if self._legacy_service():
            self.backend.remove(LEGACY_SERVICE)
            log.info(
                "removed the leftover service %s of an earlier cloudflared install", LEGACY_SERVICE
            )
        if self.salt["reg.key_exists"](LEGACY_EVENT_LOG_HIVE, LEGACY_EVENT_LOG_KEY):
            result = self.salt["reg.delete_key_recursive"](
                LEGACY_EVENT_LOG_HIVE, LEGACY_EVENT_LOG_KEY
            )
            if result.get("Failed"):
                raise CloudflaredError(
                    f"could not delete the leftover event log key {LEGACY_EVENT_LOG_KEY}: "
                    f"{result['Failed']}"
                )
            log.info("removed the leftover event log key %s", LEGACY_EVENT_LOG_KEY)

    def _record_started(self):
        config_sha = sha256_text(read_text(self.layout.config_path))
        outpost_release.write_atomically(
            self.layout.marker_path, json.dumps({"config_sha256": config_sha}) + "\n"
        )

    def remove(self):
        removed = self.backend.remove(SERVICE_NAME)
        for path in (self.layout.marker_path, self.layout.credentials_path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed = True
        return removed
