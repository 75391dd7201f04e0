"""
Bootstrap and recover Windows minions over WinRM, from the master, with ``pywinrm``.

A new site has a Windows server, its WinRM endpoint and credentials, nothing else. ``bootstrap``
checks the transport before it connects, uploads the pinned Salt minion installer in pieces that
each stay under cmd.exe's 8191-character command line, checks its sha256 on the host, installs it
silently with the master's address and the minion id, pre-seeds a key pair generated and accepted
on the master, starts the service and waits, bounded, until the minion answers ``test.ping``.
``recover`` restarts the salt-minion service of a host whose minion went silent, then waits.

Secrets (the WinRM password, the minion's private key) never appear on a remote command line: the
key travels on the command's stdin; nor in a log line, an event or a return.

Master configuration::

    outpost:
      winrm:
        master: salt.example.com          # what new minions connect to (host or host:port)
        installer:
          source: salt://artifacts/salt/Salt-Minion-3008.4-Py3-AMD64-Setup.exe   # or .msi
          sha256: <64 hex digits>
        bootstrap_script: salt://artifacts/salt/prepare.ps1   # optional, runs before install
        answer_timeout: 300               # seconds to wait for test.ping after a start
        recover_interval: 900             # seconds: at most one recovery per client
        transport: ntlm                   # defaults for every host; each host may override
        ca_trust_path: /etc/pki/outpost/winrm-ca.pem
        hosts:
          shop-01:                        # the minion id
            endpoint: https://shop-01.example.com:5986/wsman
            username: {vault: {mount: kv, path: winrm/shop-01, key: username}}
            password: {vault: {mount: kv, path: winrm/shop-01, key: password}}
"""

import base64
import contextlib
import datetime
import hashlib
import logging
import os
import re
import time
import urllib.parse
import uuid
from xml.sax.saxutils import unescape

from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_ids
import outpost_vault

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 5  # seconds a missing client gets to answer test.ping before a recovery
ABANDON_MARGIN = 60
CMD_LIMIT = 8191  # cmd.exe refuses longer command lines
SERVICE = "salt-minion"
APP = "salt-minion"  # how recoveries are named in the registry's remediations
SALT_ROOT = r"C:\ProgramData\Salt Project\Salt"
TEMP_ROOT = r"C:\Windows\Temp"
TRANSPORTS = ("basic", "plaintext", "certificate", "ntlm", "kerberos", "credssp")
ENCRYPTING_TRANSPORTS = ("ntlm", "kerberos", "credssp")
# Used with fullmatch: "$" would also admit a trailing newline.
MINION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MASTER = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?")
DEFAULTS = {
    "transport": "ntlm",
    "message_encryption": "auto",
    "server_cert_validation": "validate",
    "answer_timeout": 300,
    "recover_interval": 900,
    "operation_timeout": 20,
    "read_timeout": 30,
    "keysize": 2048,
}
HOST_KEYS = (
    "endpoint",
    "transport",
    "message_encryption",
    "server_cert_validation",
    "ca_trust_path",
    "username",
    "password",
    "bootstrap_script",
    "operation_timeout",
    "read_timeout",
)


class WinRMError(CommandExecutionError):
    """Talking to a host over WinRM failed, or a remote step failed."""


class InsecureTransport(SaltInvocationError):
    """The configured transport would expose credentials or commands; nothing was sent."""


# -- configuration ----------------------------------------------------------------------------


def settings(opts):
    return dict(DEFAULTS, **((opts.get("outpost") or {}).get("winrm") or {}))


def host_settings(opts, minion_id):
    """One host's settings, the global defaults under its own; bad values name the field."""
    if not isinstance(minion_id, str) or not MINION_ID.fullmatch(minion_id):
        raise SaltInvocationError(f"minion_id: {minion_id!r} is not a valid minion id")
    config = settings(opts)
    hosts = config.get("hosts") or {}
    if minion_id not in hosts:
        raise SaltInvocationError(f"outpost:winrm:hosts:{minion_id}: no such WinRM host")
    if not isinstance(hosts[minion_id], dict):
        raise SaltInvocationError(f"outpost:winrm:hosts:{minion_id}: expected a mapping")
    host = dict({key: config[key] for key in HOST_KEYS if key in config}, **hosts[minion_id])
    host["minion_id"] = minion_id
    return host


def is_winrm_host(opts, minion_id):
    return minion_id in (settings(opts).get("hosts") or {})


def check_transport(host):
    """Refuse a transport that would send credentials or commands readable on the wire."""
    field = f"outpost:winrm:hosts:{host['minion_id']}"
    endpoint = host.get("endpoint")
    parsed = urllib.parse.urlparse(endpoint if isinstance(endpoint, str) else "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SaltInvocationError(f"{field}:endpoint: {endpoint!r} is not an http(s) URL")
    transport = host.get("transport")
    if transport not in TRANSPORTS:
        raise SaltInvocationError(
            f"{field}:transport: {transport!r} is not one of {', '.join(TRANSPORTS)}"
        )
    if host.get("server_cert_validation") != "validate":
        raise InsecureTransport(
            f"{field}:server_cert_validation: only 'validate' is allowed; trust a private CA "
            "with ca_trust_path instead"
        )
    if parsed.scheme == "https":
        return
    if transport not in ENCRYPTING_TRANSPORTS:
        raise InsecureTransport(
            f"{field}:endpoint: plain HTTP with {transport} authentication sends the "
            "credentials and every command in clear text; use HTTPS, or ntlm, kerberos or "
            "credssp with message encryption"
        )
    if host.get("message_encryption") == "never":
        raise InsecureTransport(
            f"{field}:message_encryption: 'never' over plain HTTP sends every command in clear "
            "text; use HTTPS or message encryption"
        )


def credentials(opts, host):
    """
    The WinRM username and password: the one place outpost reads them. Either may be a Vault
    reference ``{vault: {mount, path, key}}`` (``{minion_id}`` in the path becomes the host's
    id), looked up through ``outpost_vault``; a plain value is taken as it is.
    """
    values = []
    for field in ("username", "password"):
        name = f"outpost:winrm:hosts:{host['minion_id']}:{field}"
        value = host.get(field)
        if value in (None, ""):
            raise SaltInvocationError(f"{name}: missing")
        try:
            value = outpost_vault.resolve(opts, value, host["minion_id"])
        except (CommandExecutionError, SaltInvocationError) as err:
            raise type(err)(f"{name}: {err}") from err
        values.append(str(value))
    return tuple(values)


def master_address(opts):
    master = settings(opts).get("master")
    if not isinstance(master, str) or not MASTER.fullmatch(master):
        raise SaltInvocationError(
            f"outpost:winrm:master: {master!r} is not a host name or address (host[:port])"
        )
    return master


# -- a WinRM session --------------------------------------------------------------------------


class Remote:
    """One cmd shell on one host; every command line is checked against cmd.exe's limit."""

    def __init__(self, host, username, password):
        import winrm.protocol  # pylint: disable=import-outside-toplevel

        self.endpoint = host["endpoint"]
        encryption = host.get("message_encryption", "auto")
        if not self.endpoint.lower().startswith("https"):
            encryption = "always"  # over HTTP, encrypt or fail: never fall back to clear text
        self.protocol = winrm.protocol.Protocol(
            endpoint=self.endpoint,
            transport=host["transport"],
            username=username,
            password=password,
            server_cert_validation="validate",
            ca_trust_path=host.get("ca_trust_path") or "legacy_requests",
            message_encryption=encryption,
            operation_timeout_sec=int(host.get("operation_timeout", 20)),
            read_timeout_sec=int(host.get("read_timeout", 30)),
        )
        self.shell_id = None
        self.command_count = 0
        self.longest_command = 0

    def __enter__(self):
        self.shell_id = self._call("open a shell", self.protocol.open_shell)
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self.protocol.close_shell(self.shell_id)

    def _call(self, what, function, *args):
        import requests  # pylint: disable=import-outside-toplevel
        import winrm.exceptions  # pylint: disable=import-outside-toplevel

        try:
            return function(*args)
        except winrm.exceptions.InvalidCredentialsError as err:
            raise WinRMError(f"{self.endpoint}: the credentials were refused ({what})") from err
        except winrm.exceptions.WSManFaultError as err:
            raise WinRMError(f"{self.endpoint}: {what}: WinRM fault: {err.reason}") from err
        except (winrm.exceptions.WinRMError, requests.RequestException) as err:
            raise WinRMError(f"{self.endpoint}: {what}: {type(err).__name__}: {err}") from err

    def run(self, line, what, stdin=None, check=True):
        """Run one cmd.exe command line; returns (stdout, stderr, exit code) as text."""
        if len(line) > CMD_LIMIT:
            raise WinRMError(f"{what}: a {len(line)}-character command line would fail")
        self.command_count += 1
        self.longest_command = max(self.longest_command, len(line))
        command_id = self._call(what, self.protocol.run_command, self.shell_id, line)
        try:
            if stdin is not None:
                self._call(
                    what, self.protocol.send_command_input, self.shell_id, command_id, stdin, True
                )
            out, err, code = self._call(
                what, self.protocol.get_command_output, self.shell_id, command_id
            )
        finally:
            with contextlib.suppress(Exception):
                self.protocol.cleanup_command(self.shell_id, command_id)
        out, err = _text(out), _powershell_errors(_text(err))
        if check and code != 0:
            raise WinRMError(f"{self.endpoint}: {what} failed (exit code {code}): {err or out}")
        return out, err, code

    def powershell(self, script, what, stdin=None, check=True):
        """A short PowerShell script, as -EncodedCommand; data it needs comes on stdin."""
        encoded = base64.b64encode(script.encode("utf-16-le")).decode()
        line = (
            "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass "
            f"-EncodedCommand {encoded}"
        )
        return self.run(line, what, stdin=stdin, check=check)

    def upload(self, data, path, what):
        """Send bytes to ``path`` in base64 pieces appended to a temp file, then decode it."""
        staging = f"{path}.b64"
        prefix = f'>>"{staging}" echo '
        piece = (CMD_LIMIT - len(prefix)) // 4 * 4
        encoded = base64.b64encode(data).decode()
        pieces = [encoded[start : start + piece] for start in range(0, len(encoded), piece)]
        for number, chunk in enumerate(pieces, start=1):
            self.run(prefix + chunk, f"{what}: piece {number} of {len(pieces)}")
        self.run(f'certutil -f -decode "{staging}" "{path}"', f"{what}: decode")
        self.run(f'del /f /q "{staging}"', f"{what}: remove the staging file")
        return len(pieces)

    def sha256(self, path, what):
        out, _, _ = self.run(f'certutil -hashfile "{path}" SHA256', what)
        for line in out.splitlines():
            digest = line.replace(" ", "").strip().lower()
            if re.fullmatch(r"[0-9a-f]{64}", digest):
                return digest
        raise WinRMError(f"{self.endpoint}: {what}: no SHA256 in certutil's answer")


def _text(data):
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _powershell_errors(stderr):
    """PowerShell writes errors as CLIXML when its output is redirected; keep their text."""
    if not stderr.startswith("#< CLIXML"):
        return stderr.strip()
    errors = re.findall(r'<S S="Error">(.*?)</S>', stderr, flags=re.S)
    text = unescape("".join(errors))
    text = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)
    return text.strip()


def _ps_quote(text):
    return "'" + text.replace("'", "''") + "'"


def write_file_from_stdin(remote, path, data, what):
    """Write bytes to ``path`` on the host with the bytes on stdin, never on a command line."""
    folder = path.rsplit("\\", 1)[0]
    script = "\n".join(
        [
            "$ErrorActionPreference = 'Stop'",
            f"$null = New-Item -ItemType Directory -Force -Path {_ps_quote(folder)}",
            f"[IO.File]::WriteAllBytes({_ps_quote(path)}, "
            "[Convert]::FromBase64String(($input | Out-String)))",
        ]
    )
    remote.powershell(script, what, stdin=base64.b64encode(data) + b"\r\n")


# -- artifacts on the master ------------------------------------------------------------------


def fetch(opts, source, field):
    """The bytes of a salt://, https:// or local file, through the master's fileserver."""
    if not isinstance(source, str) or not source:
        raise SaltInvocationError(f"{field}: missing")
    if os.path.isabs(source):
        path = source
    else:
        import salt.fileclient  # pylint: disable=import-outside-toplevel

        with salt.fileclient.FSClient(opts) as client:
            path = client.cache_file(source)
    if not path or not os.path.isfile(path):
        raise CommandExecutionError(f"{field}: {source} cannot be fetched")
    with open(path, "rb") as handle:
        return handle.read()


def fetch_installer(opts):
    installer = settings(opts).get("installer") or {}
    expected = str(installer.get("sha256", "")).lower().removeprefix("sha256=")
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise SaltInvocationError("outpost:winrm:installer:sha256: not 64 hex digits")
    source = installer.get("source")
    name = str(source or "").replace("\\", "/").rsplit("/", 1)[-1]
    if not re.fullmatch(r"[A-Za-z0-9._-]+\.(exe|msi)", name):
        raise SaltInvocationError(
            f"outpost:winrm:installer:source: {name!r} is not an .exe or .msi installer name"
        )
    data = fetch(opts, source, "outpost:winrm:installer:source")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CommandExecutionError(
            f"outpost:winrm:installer:sha256: {source} has sha256 {actual}, not {expected}"
        )
    return {"name": name, "data": data, "sha256": actual}


def install_command(path, master, minion_id):
    """Salt's silent install: the NSIS installer's switches, or the MSI's properties."""
    if path.lower().endswith(".msi"):
        return (
            f'start "" /wait msiexec /i "{path}" /qn /norestart '
            f'MASTER={master} MINION_ID={minion_id} START_MINION=""'
        )
    return f'start "" /wait "{path}" /S /master={master} /minion-name={minion_id} /start-minion=0'


# -- keys -------------------------------------------------------------------------------------


def _key_cache(opts):
    import salt.cache  # pylint: disable=import-outside-toplevel

    return salt.cache.Cache(opts, driver=opts.get("keys.cache_driver", "localfs_key"))


def check_key_free(opts, minion_id, force):
    """A minion id whose key the master knows is someone's: refuse to take it over unforced."""
    known = _key_cache(opts).fetch("keys", minion_id)
    if known and not force:
        state = known.get("state", "known") if isinstance(known, dict) else "known"
        raise SaltInvocationError(
            f"minion_id: the master already has a key for {minion_id} ({state}); "
            "pass force=True to replace it"
        )


def generate_key(opts):
    """A minion key pair made by Salt's own crypt functions: (private PEM, public PEM)."""
    import salt.crypt  # pylint: disable=import-outside-toplevel

    return salt.crypt.gen_keys(int(settings(opts)["keysize"]))


def accept_key(opts, minion_id, public_pem):
    _key_cache(opts).store("keys", minion_id, {"pub": public_pem, "state": "accepted"})


def master_public_key(opts):
    path = os.path.join(opts["pki_dir"], "master.pub")
    with open(path, "rb") as handle:
        return handle.read()


# -- waiting for the minion -------------------------------------------------------------------


def answers_ping(opts, minion_id, timeout=3):
    """True when the minion answers one ``test.ping`` (aimed at it alone) within ``timeout``."""
    import salt.client  # pylint: disable=import-outside-toplevel
    import salt.exceptions  # pylint: disable=import-outside-toplevel

    client = salt.client.get_local_client(opts["conf_file"])
    try:
        answers = client.cmd(
            [minion_id], "test.ping", tgt_type="list", timeout=timeout, gather_job_timeout=2
        )
    except salt.exceptions.SaltClientError as err:
        log.debug("test.ping of %s failed: %s", minion_id, err)
        return False
    return answers.get(minion_id) is True


def wait_until_answers(opts, minion_id, timeout):
    """Poll ``test.ping`` through the master until the minion answers; seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        # Short tries: a ping published before the minion subscribed is lost, not late.
        if answers_ping(opts, minion_id):
            return round(time.monotonic() - started, 1)
        time.sleep(1)
    raise WinRMError(f"{minion_id} did not answer test.ping within {timeout:g} s")


# -- bootstrap --------------------------------------------------------------------------------


def bootstrap(opts, minion_id, force=False):
    """Install, key and start a Salt minion on a Windows host; see the module doc."""
    host = host_settings(opts, minion_id)
    check_transport(host)
    master = master_address(opts)
    installer = fetch_installer(opts)
    script = host.get("bootstrap_script")
    script = fetch(opts, script, "outpost:winrm:bootstrap_script") if script else None
    check_key_free(opts, minion_id, force)
    private_pem, public_pem = generate_key(opts)
    username, password = credentials(opts, host)

    log.info("bootstrapping %s over WinRM at %s", minion_id, host["endpoint"])
    work = rf"{TEMP_ROOT}\outpost-{uuid.uuid4().hex[:12]}"
    report = {"minion_id": minion_id, "endpoint": host["endpoint"]}
    with Remote(host, username, password) as remote:
        remote.run(f'mkdir "{work}"', "create the work folder")
        try:
            report.update(_install(remote, work, installer, script, master, minion_id))
            _seed_keys(opts, remote, minion_id, private_pem, public_pem)
            report["key"] = "accepted"
            remote.powershell(
                f"$ErrorActionPreference = 'Stop'\nStart-Service -Name {_ps_quote(SERVICE)}",
                "start the salt-minion service",
            )
        finally:
            remote.run(f'rmdir /s /q "{work}"', "remove the work folder", check=False)
        report["commands"] = remote.command_count
        report["longest_command"] = remote.longest_command

    timeout = float(settings(opts)["answer_timeout"])
    report["answered_after"] = wait_until_answers(opts, minion_id, timeout)
    log.info("%s answers test.ping after %s s", minion_id, report["answered_after"])
    return report


def _install(remote, work, installer, script, master, minion_id):
    path = rf"{work}\{installer['name']}"
    pieces = remote.upload(installer["data"], path, "upload the installer")
    on_host = remote.sha256(path, "hash the uploaded installer")
    if on_host != installer["sha256"]:
        raise WinRMError(f"the installer arrived with sha256 {on_host}, not {installer['sha256']}")
    done = {
        "installer": {"name": installer["name"], "sha256": on_host, "pieces": pieces},
    }
    if script is not None:
        done["bootstrap_script"] = run_script(remote, work, script)
    command = install_command(path, master, minion_id)
    remote.run(command, "install the Salt minion")
    done["install"] = command
    return done


def run_script(remote, work, script):
    """Upload a PowerShell script in pieces and run it with -File; returns what it printed."""
    path = rf"{work}\bootstrap-{uuid.uuid4().hex[:8]}.ps1"
    if not script.startswith(b"\xef\xbb\xbf"):
        script = b"\xef\xbb\xbf" + script  # Windows PowerShell reads UTF-8 only with a BOM
    pieces = remote.upload(script, path, "upload the bootstrap script")
    out, _, _ = remote.run(
        f'powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{path}"',
        "run the bootstrap script",
    )
    remote.run(f'del /f /q "{path}"', "remove the bootstrap script", check=False)
    return {"pieces": pieces, "sha256": hashlib.sha256(script).hexdigest(), "output": out}


def _seed_keys(opts, remote, minion_id, private_pem, public_pem):
    """The minion's keys, and the master's public key so it trusts only this master."""
    pki = rf"{SALT_ROOT}\conf\pki\minion"
    write_file_from_stdin(remote, rf"{pki}\minion.pem", _bytes(private_pem), "seed the key")
    write_file_from_stdin(remote, rf"{pki}\minion.pub", _bytes(public_pem), "seed the key")
    write_file_from_stdin(
        remote, rf"{pki}\minion_master.pub", master_public_key(opts), "seed the master's key"
    )
    accept_key(opts, minion_id, _text(public_pem))
    log.info("accepted the pre-seeded key of %s", minion_id)


def _bytes(text):
    return text.encode() if isinstance(text, str) else text


# -- recovery ---------------------------------------------------------------------------------


def recover(opts, minion_id):
    """Restart a host's salt-minion service over WinRM and wait until the minion answers."""
    host = host_settings(opts, minion_id)
    check_transport(host)
    username, password = credentials(opts, host)

    log.info("restarting salt-minion on %s over WinRM", minion_id)
    with Remote(host, username, password) as remote:
        out, _, code = remote.run(f"sc query {SERVICE}", "ask for the service", check=False)
        if code == 1060:
            raise WinRMError(f"{minion_id}: salt-minion is not installed; bootstrap it")
        if code != 0:
            raise WinRMError(f"{minion_id}: sc query {SERVICE} failed (exit code {code})")
        before = _service_state(out)
        remote.powershell(
            f"$ErrorActionPreference = 'Stop'\nRestart-Service -Name {_ps_quote(SERVICE)} -Force",
            "restart the salt-minion service",
        )
    answered = wait_until_answers(opts, minion_id, float(settings(opts)["answer_timeout"]))
    log.info("%s answers test.ping again after %s s", minion_id, answered)
    return {"minion_id": minion_id, "state_before": before, "answered_after": answered}


def _service_state(sc_output):
    match = re.search(r"STATE\s*:\s*\d+\s+(\w+)", sc_output)
    return match.group(1) if match else "UNKNOWN"


# -- the reactor's entry ----------------------------------------------------------------------


def handle_missing(opts, registry, tag, emit):
    """
    A client went silent: recover it over WinRM, at most once per ``recover_interval``,
    claimed in the registry so that several masters act once. Returns the decision.
    """
    parts = str(tag).split("/")
    if len(parts) != 4 or parts[:2] != ["outpost", "client"] or parts[3] != "missing":
        return {"ignored": f"not a client-missing event: {tag}"}
    client = parts[2]
    if not outpost_ids.is_minion_id(client) or not is_winrm_host(opts, client):
        log.debug("%s is missing but is no WinRM host; nothing to recover", client)
        return {"ignored": f"{client} is not a WinRM host"}

    claimed = registry.claim_remediation(client, APP, abandon_after=_abandon_after(opts, client))
    if claimed is None:
        return _decided(emit, client, "merged", "a recovery of this client is under way")
    interval = float(settings(opts)["recover_interval"])
    since = (
        datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=interval)
    ).isoformat(timespec="milliseconds")
    recent = [
        entry
        for entry in registry.remediations(client, since, app=APP)
        if entry["decision"] == "recover"
    ]
    if recent:
        why = f"recovered at {recent[-1]['started_at']}, within {interval:g} s"
        registry.finish_remediation(claimed, "throttled", why, None)
        return _decided(emit, client, "throttled", why)

    # Any minion can fire this event for any host (Salt does not check who sends event data):
    # a client that answers is not missing, whatever the event says.
    if answers_ping(opts, client, timeout=CONFIRM_TIMEOUT):
        why = "the event said missing, but the client answers test.ping"
        registry.finish_remediation(claimed, "not-confirmed", why, None)
        return _decided(emit, client, "not-confirmed", why)

    why, decision = "no heartbeat: restarting salt-minion over WinRM", "recover"
    try:
        done = recover(opts, client)
        result = f"answered after {done['answered_after']} s (was {done['state_before']})"
    except (CommandExecutionError, SaltInvocationError) as err:
        decision, result = "alert", f"recovery failed: {err}"
        emit(f"outpost/alert/{client}/{APP}", {"reason": result, "time": time.time()})
    registry.finish_remediation(claimed, "recover", why, result)
    return _decided(emit, client, decision, why, result)


def _abandon_after(opts, client):
    """A recovery claim older than this was left by a master that stopped mid-way: a ping, a few
    WinRM calls of at most ``read_timeout`` each, then ``answer_timeout`` for the minion."""
    config, host = settings(opts), host_settings(opts, client)
    calls = 4 * float(host.get("read_timeout", config["read_timeout"]))
    return CONFIRM_TIMEOUT + calls + float(config["answer_timeout"]) + ABANDON_MARGIN


def _decided(emit, client, decision, reason, result=None):
    data = {"client": client, "app": APP, "reason": reason, "result": result, "time": time.time()}
    log.info("recovery of %s: %s (%s) -> %s", client, decision, reason, result)
    emit(f"outpost/remediation/{client}/{APP}/{decision}", data)
    return {"decision": decision, "reason": reason, "result": result}
