"""
A stand-in for a Windows host's WinRM service (WS-Management over HTTPS), which cannot run here.

Real ``pywinrm`` talks to it: Create (a cmd shell), Command, Send (stdin), Receive, Signal and
Delete, answered with the SOAP bodies Windows sends, and SOAP faults where Windows sends them
(an unknown shell, an operation timeout on Receive, a command past CreateProcess's limit). HTTP
basic authentication over TLS, with a certificate from a CA made here with ``cryptography``.

Behind the shell it plays the parts of Windows that outpost's bootstrap and recovery use:

- cmd.exe: a command line over 8191 characters fails as cmd fails ("The command line is too
  long.", exit code 1); ``>>"file" echo DATA``, ``mkdir``, ``rmdir /s /q``, ``certutil -decode``,
  ``certutil -hashfile``, ``sc query|start|stop``, ``start "" /wait <program>``;
- PowerShell (``-EncodedCommand`` or ``-File``): one statement a line, of the few cmdlets
  outpost sends (``New-Item``, ``[IO.File]::WriteAllBytes`` from ``$input``, ``Start-Service``,
  ``Stop-Service``, ``Restart-Service``, ``Get-Service``, ``Write-Output``); errors come back as
  CLIXML on stderr, as they do from a real ``powershell.exe``;
- the Salt minion installer (NSIS ``/S /master= /minion-name= /start-minion=`` or MSI
  ``MASTER= MINION_ID= START_MINION=``) writes ``conf\\minion`` and registers ``salt-minion``;
- the ``salt-minion`` service is a REAL salt-minion daemon started from that configuration and
  the pre-seeded keys in ``conf\\pki\\minion``; stopping the service stops the daemon.

Windows paths map to folders under ``root`` (case-insensitive, as on Windows). Every command line
and every file the host received is recorded for tests to inspect.
"""

import base64
import contextlib
import datetime
import getpass
import hashlib
import http.server
import ipaddress
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import yaml

CMD_LIMIT = 8191  # cmd.exe's longest command line
CREATE_PROCESS_LIMIT = 32767
SALT_ROOT = r"C:\ProgramData\Salt Project\Salt"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": SHELL_URI,
}
ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "delete",
    f"{SHELL_URI}/Command": "command",
    f"{SHELL_URI}/Send": "send",
    f"{SHELL_URI}/Receive": "receive",
    f"{SHELL_URI}/Signal": "signal",
}
NOT_RECOGNIZED = (
    "'{}' is not recognized as an internal or external command,\r\n"
    "operable program or batch file.\r\n"
)


# -- certificates -----------------------------------------------------------------------------


def make_certificates(folder):
    """A CA and a server certificate for 127.0.0.1 and localhost; returns (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outpost test WinRM CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return tuple(str(path) for path in paths)


# -- SOAP -------------------------------------------------------------------------------------


def envelope(action, relates_to, body):
    return (
        '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        f'xmlns:rsp="{SHELL_URI}" '
        'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
        f"<s:Header><a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


class Fault(Exception):
    """A WS-Management fault, as the WinRM service sends it with HTTP 500."""

    def __init__(self, subcode, code, message, sender=True):
        super().__init__(message)
        self.subcode = subcode
        self.code = code
        self.message = message
        self.sender = sender

    def body(self, machine):
        side = "s:Sender" if self.sender else "s:Receiver"
        text = escape(self.message)
        return (
            f"<s:Fault><s:Code><s:Value>{side}</s:Value><s:Subcode><s:Value>{self.subcode}"
            "</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{text} </s:Text></s:Reason>'
            '<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"'
            f' Code="{self.code}" Machine="{machine}"><f:Message>{text} </f:Message>'
            "</f:WSManFault></s:Detail></s:Fault>"
        )


def shell_not_found(shell_id):
    return Fault(
        "w:InvalidSelectors",
        2150858843,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the "
        "shell was not found on the server. Possible causes are: the specified ShellId is "
        "incorrect or the shell no longer exists on the server. Provide the correct ShellId or "
        "create a new shell and retry the operation.",
    )


OPERATION_TIMEOUT = Fault(
    "w:TimedOut",
    2150858793,
    "The WS-Management service cannot complete the operation within the time specified in "
    "OperationTimeout.",
    sender=False,
)


def clixml_error(message):
    """PowerShell's stderr when its output is redirected: CLIXML, not plain text."""
    text = escape(message).replace("\n", "_x000A_").replace("\r", "_x000D_")
    return (
        "#< CLIXML\r\n"
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{text}_x000D__x000A_</S></Objs>'
    ).encode()


# -- the host ---------------------------------------------------------------------------------


class Command:
    def __init__(self, line):
        self.id = str(uuid.uuid4()).upper()
        self.line = line
        self.stdin = bytearray()
        self.stdin_closed = threading.Event()
        self.done = threading.Event()
        self.stdout = b""
        self.stderr = b""
        self.exit_code = None


class WindowsHost:
    """The simulated Windows side: file system, services, cmd and a little PowerShell."""

    def __init__(self, root, sock_dir, username, password, minion_overrides=None):
        self.root = pathlib.Path(root)
        self.sock_dir = pathlib.Path(sock_dir)
        self.username = username
        self.password = password
        self.minion_overrides = minion_overrides or {}
        self.commands = []  # every command line received, in order
        self.installs = []  # {program, sha256, arguments} of every installer run
        self.stdin_seen = []  # what arrived on stdin, per command line
        self.service = None  # None: not installed; else {"process": Popen or None}
        self.lock = threading.Lock()

    # -- file system ----------------------------------------------------------------------

    def path(self, windows_path):
        """The local folder standing for a Windows path (case-insensitive, like NTFS)."""
        text = windows_path.strip('"').replace("/", "\\")
        match = re.match(r"^([A-Za-z]):\\(.*)$", text)
        if not match:
            raise ValueError(f"not an absolute Windows path: {windows_path}")
        parts = [part for part in match.group(2).lower().split("\\") if part]
        return self.root.joinpath(match.group(1).lower(), *parts)

    def read(self, windows_path):
        return self.path(windows_path).read_bytes()

    def exists(self, windows_path):
        return self.path(windows_path).exists()

    def temp_files(self):
        """Files left under C:\\Windows\\Temp."""
        temp = self.path(r"C:\Windows\Temp")
        return sorted(str(p) for p in temp.rglob("*") if p.is_file()) if temp.exists() else []

    # -- services -------------------------------------------------------------------------

    def service_running(self):
        process = (self.service or {}).get("process")
        return process is not None and process.poll() is None

    def start_service(self):
        if self.service_running():
            return False
        conf = self.path(rf"{SALT_ROOT}\conf")
        self._write_local_settings(conf)
        log = open(self.path(rf"{SALT_ROOT}\var\log\salt\minion.out"), "ab")  # noqa: SIM115
        binary = pathlib.Path(sys.executable).parent / "salt-minion"
        self.service["process"] = subprocess.Popen(
            [str(binary), "-c", str(conf), "-l", "quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a crash takes all its processes
        )
        log.close()
        return True

    def stop_service(self, timeout=30):
        process = (self.service or {}).get("process")
        if process is None or process.poll() is not None:
            return False
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        _kill_group(process)
        return True

    def kill_service(self):
        """What a crash does: the daemon dies, the service stays registered."""
        process = (self.service or {}).get("process")
        if process is not None and process.poll() is None:
            _kill_group(process)

    def _write_local_settings(self, conf):
        """What Windows gets from its own layout: where the daemon keeps its files here."""
        var = self.path(rf"{SALT_ROOT}\var")
        for folder in (var / "log" / "salt", var / "cache" / "salt" / "minion", self.sock_dir):
            folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "root_dir": "/",
            "pki_dir": str(self.path(rf"{SALT_ROOT}\conf\pki\minion")),
            "cachedir": str(var / "cache" / "salt" / "minion"),
            "extension_modules": str(var / "cache" / "salt" / "minion" / "extmods"),
            "sock_dir": str(self.sock_dir),
            "pidfile": str(var / "run" / "salt-minion.pid"),
            "log_file": str(var / "log" / "salt" / "minion"),
            "log_level_logfile": "info",
            "user": getpass.getuser(),
            "acceptance_wait_time": 1,
            **self.minion_overrides,
        }
        (var / "run").mkdir(parents=True, exist_ok=True)
        (conf / "minion.d").mkdir(parents=True, exist_ok=True)
        (conf / "minion.d" / "zz-standin.conf").write_text(yaml.safe_dump(settings))

    def close(self):
        self.stop_service()

    # -- cmd.exe --------------------------------------------------------------------------

    def run(self, command):
        """Run one command line as cmd.exe would; sets stdout, stderr and the exit code."""
        with self.lock:
            self.commands.append(command.line)
        if len(command.line) > CMD_LIMIT:
            return self._finish(command, b"", b"The command line is too long.\r\n", 1)
        try:
            out, err, code = self._cmd(command)
        except FileNotFoundError:
            out, err, code = b"", b"The system cannot find the path specified.\r\n", 1
        except Exception as err:  # the stand-in's own bug: say so rather than hang the client
            out, err, code = b"", f"stand-in error: {err!r}\r\n".encode(), 1
        return self._finish(command, out, err, code)

    @staticmethod
    def _finish(command, out, err, code):
        command.stdout, command.stderr, command.exit_code = out, err, code
        command.done.set()

    def _cmd(self, command):
        line = command.line.strip()
        append = re.fullmatch(r'>>"([^"]+)" echo ([A-Za-z0-9+/=]+)', line)
        if append:
            with open(self.path(append.group(1)), "ab") as target:
                target.write(append.group(2).encode() + b"\r\n")
            return b"", b"", 0
        words = shlex.split(line.replace("\\", "\\\\"), posix=True)
        program = words[0].lower()
        if program.endswith(".exe"):
            program = program[:-4]
        handler = {
            "mkdir": self._mkdir,
            "rmdir": self._rmdir,
            "del": self._del,
            "certutil": self._certutil,
            "sc": self._sc,
            "start": self._start,
            "powershell": lambda args: self._powershell_command(args, command),
        }.get(program)
        if handler is None:
            return b"", NOT_RECOGNIZED.format(words[0]).encode(), 1
        return handler(words[1:])

    def _mkdir(self, args):
        target = self.path(args[-1])
        if target.exists():
            return b"", f"A subdirectory or file {args[-1]} already exists.\r\n".encode(), 1
        target.mkdir(parents=True)
        return b"", b"", 0

    def _rmdir(self, args):
        target = self.path(args[-1])
        if not target.exists():
            return b"", b"The system cannot find the file specified.\r\n", 2
        shutil.rmtree(target)
        return b"", b"", 0

    def _del(self, args):
        target = self.path(args[-1])
        if not target.is_file():
            return b"", f"Could Not Find {args[-1]}\r\n".encode(), 0
        target.unlink()
        return b"", b"", 0

    def _certutil(self, args):
        if args[:2] == ["-f", "-decode"] and len(args) == 4:
            encoded = self.path(args[2]).read_bytes()
            decoded = base64.b64decode(re.sub(rb"\s+", b"", encoded), validate=True)
            self.path(args[3]).write_bytes(decoded)
            return (
                (
                    f"Input Length = {len(encoded)}\r\nOutput Length = {len(decoded)}\r\n"
                    "CertUtil: -decode command completed successfully.\r\n"
                ).encode(),
                b"",
                0,
            )
        if args[:1] == ["-hashfile"] and len(args) == 3 and args[2].upper() == "SHA256":
            digest = hashlib.sha256(self.path(args[1]).read_bytes()).hexdigest()
            return (
                (
                    f"SHA256 hash of {args[1]}:\r\n{digest}\r\n"
                    "CertUtil: -hashfile command completed successfully.\r\n"
                ).encode(),
                b"",
                0,
            )
        return b"CertUtil: Unknown arg\r\n", b"", 87

    def _sc(self, args):
        verb, name = (args + ["", ""])[:2]
        if name.lower() != "salt-minion" or self.service is None:
            return (
                (
                    b"[SC] OpenService FAILED 1060:\r\n\r\nThe specified service does not exist "
                    b"as an installed service.\r\n\r\n"
                ),
                b"",
                1060,
            )
        if verb == "start":
            if not self.start_service():
                return (
                    b"[SC] StartService FAILED 1056:\r\n\r\n"
                    b"An instance of the service is already running.\r\n\r\n",
                    b"",
                    1056,
                )
            return self._sc_state("2  START_PENDING"), b"", 0
        if verb == "stop":
            if not self.stop_service():
                return (
                    b"[SC] ControlService FAILED 1062:\r\n\r\n"
                    b"The service has not been started.\r\n\r\n",
                    b"",
                    1062,
                )
            return self._sc_state("3  STOP_PENDING"), b"", 0
        state = "4  RUNNING" if self.service_running() else "1  STOPPED"
        return self._sc_state(state), b"", 0

    @staticmethod
    def _sc_state(state):
        return (
            "\r\nSERVICE_NAME: salt-minion\r\n"
            "        TYPE               : 10  WIN32_OWN_PROCESS\r\n"
            f"        STATE              : {state}\r\n"
            "        WIN32_EXIT_CODE    : 0  (0x0)\r\n"
            "        SERVICE_EXIT_CODE  : 0  (0x0)\r\n"
            "        CHECKPOINT         : 0x0\r\n"
            "        WAIT_HINT          : 0x0\r\n"
        ).encode()

    def _start(self, args):
        # start "" /wait <program> [arguments]
        if len(args) < 3 or args[0] != "" or args[1].lower() != "/wait":
            return b"", b"The system cannot find the file specified.\r\n", 1
        program, arguments = args[2], args[3:]
        if program.lower() in ("msiexec", "msiexec.exe"):
            return self._msiexec(arguments)
        if not self.exists(program):
            return b"", b"The system cannot find the file specified.\r\n", 2
        if not re.search(r"salt-minion-[^\\]*-setup\.exe$", program.lower()):
            return b"", b"", 0
        options = dict(self._nsis_option(arg) for arg in arguments)
        if "/s" not in options:
            return b"", b"the installer waits for a person to click through it\r\n", 1
        return self._install(
            program,
            arguments,
            options.get("/master"),
            options.get("/minion-name"),
            options.get("/start-minion", "1") == "1",
        )

    @staticmethod
    def _nsis_option(argument):
        name, _, value = argument.partition("=")
        return name.lower(), value

    def _msiexec(self, arguments):
        lowered = [arg.lower() for arg in arguments]
        if "/i" not in lowered or "/qn" not in lowered:
            return b"", b"", 1639  # ERROR_INVALID_COMMAND_LINE
        program = arguments[lowered.index("/i") + 1]
        if not self.exists(program):
            return b"", b"", 1619  # ERROR_INSTALL_PACKAGE_OPEN_FAILED
        properties = dict(arg.split("=", 1) for arg in arguments if "=" in arg)
        start = properties.get("START_MINION", "1") not in ("", '""')
        return self._install(
            program, arguments, properties.get("MASTER"), properties.get("MINION_ID"), start
        )

    def _install(self, program, arguments, master, minion_id, start):
        self.installs.append(
            {
                "program": program,
                "sha256": hashlib.sha256(self.read(program)).hexdigest(),
                "arguments": list(arguments),
            }
        )
        conf = self.path(rf"{SALT_ROOT}\conf")
        (conf / "pki" / "minion").mkdir(parents=True, exist_ok=True)
        self.path(rf"{SALT_ROOT}\var\log\salt").mkdir(parents=True, exist_ok=True)
        (conf / "minion").write_text(
            yaml.safe_dump({"master": master or "salt", "id": minion_id or "WIN-STANDIN"})
        )
        self.service = self.service or {"process": None}
        if start:
            self.start_service()
        return b"", b"", 0

    # -- PowerShell -----------------------------------------------------------------------

    def _powershell_command(self, args, command):
        lowered = [arg.lower() for arg in args]
        if "-encodedcommand" in lowered:
            encoded = args[lowered.index("-encodedcommand") + 1]
            script = base64.b64decode(encoded).decode("utf-16-le")
        elif "-file" in lowered:
            script = self.read(args[lowered.index("-file") + 1]).decode("utf-8-sig")
        else:
            return b"", clixml_error("this stand-in runs -EncodedCommand or -File only"), 1
        return self._powershell(script, command)

    def _powershell(self, script, command):
        out = []
        for number, raw in enumerate(script.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#") or line == "$ErrorActionPreference = 'Stop'":
                continue
            try:
                out.append(self._statement(line, command))
            except PowerShellError as err:
                message = f"{err}\nAt line:{number} char:1\n+ {line}"
                return "".join(out).encode(), clixml_error(message), 1
        return "".join(out).encode(), b"", 0

    def _statement(self, line, command):
        quoted = r"'((?:[^']|'')*)'"
        if match := re.fullmatch(rf"Write-Output {quoted}", line):
            return match.group(1).replace("''", "'") + "\r\n"
        if match := re.fullmatch(
            rf"\$null = New-Item -ItemType Directory -Force -Path {quoted}", line
        ):
            self.path(match.group(1)).mkdir(parents=True, exist_ok=True)
            return ""
        pattern = (
            rf"\[IO\.File\]::WriteAllBytes\({quoted}, "
            r"\[Convert\]::FromBase64String\(\(\$input \| Out-String\)\)\)"
        )
        if match := re.fullmatch(pattern, line):
            data = self._read_stdin(command)
            self.path(match.group(1)).write_bytes(base64.b64decode(re.sub(rb"\s+", b"", data)))
            return ""
        if match := re.fullmatch(
            rf"(Start|Stop|Restart|Get)-Service -Name {quoted}( -Force)?", line
        ):
            return self._service_cmdlet(match.group(1), match.group(2))
        word = line.split()[0]
        raise PowerShellError(
            f"{word} : The term '{word}' is not recognized as the name of a cmdlet, function, "
            "script file, or operable program."
        )

    def _read_stdin(self, command):
        if not command.stdin_closed.wait(timeout=60):
            raise PowerShellError("stdin was never closed")
        data = bytes(command.stdin)
        with self.lock:
            self.stdin_seen.append((command.line, data))
        return data

    def _service_cmdlet(self, verb, name):
        if name.lower() != "salt-minion" or self.service is None:
            raise PowerShellError(
                f"{verb}-Service : Cannot find any service with service name '{name}'."
            )
        if verb == "Start":
            self.start_service()
        elif verb == "Stop":
            self.stop_service()
        elif verb == "Restart":
            self.stop_service()
            self.start_service()
        status = "Running" if self.service_running() else "Stopped"
        if verb != "Get":
            return ""
        return (
            "\r\nStatus   Name               DisplayName\r\n"
            "------   ----               -----------\r\n"
            f"{status:<8} salt-minion        salt-minion\r\n\r\n"
        )


def _kill_group(process):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class PowerShellError(Exception):
    pass


# -- the WinRM service ------------------------------------------------------------------------


class WinRMService:
    """The HTTPS listener: WS-Management shells over the simulated host."""

    def __init__(self, host, certificates, port=0):
        self.host = host
        self.shells = {}
        self.requests = []  # (action, status) of every request, for tests
        self.ca, cert, key = certificates
        handler = type("Handler", (_Handler,), {"service": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self):
        return f"https://127.0.0.1:{self.port}/wsman"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.host.close()

    # -- operations -----------------------------------------------------------------------

    def handle(self, document):
        # Only the tests' own pywinrm client talks to this listener, on loopback.
        root = ET.fromstring(document)  # noqa: S314
        header = root.find("s:Header", NS)
        action = header.findtext("a:Action", namespaces=NS)
        message_id = header.findtext("a:MessageID", namespaces=NS)
        operation = ACTIONS.get(action)
        self.requests.append(operation or action)
        if operation is None:
            raise Fault(
                "a:ActionNotSupported", 2150858754, f"The action {action} is not supported."
            )
        body = root.find("s:Body", NS)
        shell_id = None
        selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        if selector is not None:
            shell_id = selector.text
        if operation != "create" and shell_id not in self.shells:
            raise shell_not_found(shell_id)
        timeout = _seconds(header.findtext("w:OperationTimeout", "PT60S", NS))
        reply_action, reply = getattr(self, f"_{operation}")(shell_id, body, timeout)
        return envelope(reply_action, message_id, reply)

    def _create(self, _shell_id, _body, _timeout):
        shell_id = str(uuid.uuid4()).upper()
        self.shells[shell_id] = {}
        address = f"https://127.0.0.1:{self.port}/wsman"
        return (
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
            f"<x:ResourceCreated><a:Address>{address}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{SHELL_URI}/cmd</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{SHELL_URI}/cmd</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(self.host.username)}</rsp:Owner>"
            "<rsp:InputStreams>stdin</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
        )

    def _command(self, shell_id, body, _timeout):
        line = body.findtext("rsp:CommandLine/rsp:Command", "", NS)
        arguments = body.findall("rsp:CommandLine/rsp:Arguments", NS)
        line = " ".join([line, *[arg.text or "" for arg in arguments]])
        if len(line) > CREATE_PROCESS_LIMIT:
            raise Fault(
                "w:InternalError", 206, "The filename or extension is too long.", sender=False
            )
        command = Command(line)
        self.shells[shell_id][command.id] = command
        threading.Thread(target=self.host.run, args=(command,), daemon=True).start()
        return (
            f"{SHELL_URI}/CommandResponse",
            f"<rsp:CommandResponse><rsp:CommandId>{command.id}</rsp:CommandId>"
            "</rsp:CommandResponse>",
        )

    def _find(self, shell_id, command_id):
        command = self.shells[shell_id].get(command_id)
        if command is None:
            raise Fault(
                "w:InvalidParameter",
                2150858882,
                "The WS-Management service cannot process the request because the request "
                "contained an unknown CommandId.",
            )
        return command

    def _send(self, shell_id, body, _timeout):
        stream = body.find("rsp:Send/rsp:Stream", NS)
        command = self._find(shell_id, stream.get("CommandId"))
        command.stdin.extend(base64.b64decode(stream.text or ""))
        if stream.get("End", "false").lower() == "true":
            command.stdin_closed.set()
        return f"{SHELL_URI}/SendResponse", "<rsp:SendResponse/>"

    def _receive(self, shell_id, body, timeout):
        stream = body.find("rsp:Receive/rsp:DesiredStream", NS)
        command = self._find(shell_id, stream.get("CommandId"))
        if not command.done.wait(timeout=min(timeout, 60)):
            raise OPERATION_TIMEOUT
        parts = []
        for name in ("stdout", "stderr"):
            data = getattr(command, name)
            if data:
                parts.append(
                    f'<rsp:Stream Name="{name}" CommandId="{command.id}">'
                    f"{base64.b64encode(data).decode()}</rsp:Stream>"
                )
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{command.id}" End="true"/>')
        state = f"{SHELL_URI}/CommandState/Done"
        return (
            f"{SHELL_URI}/ReceiveResponse",
            f"<rsp:ReceiveResponse>{''.join(parts)}"
            f'<rsp:CommandState CommandId="{command.id}" State="{state}">'
            f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            "</rsp:ReceiveResponse>",
        )

    def _signal(self, shell_id, body, _timeout):
        signal = body.find("rsp:Signal", NS)
        command = self._find(shell_id, signal.get("CommandId"))
        command.stdin_closed.set()
        del self.shells[shell_id][command.id]
        return f"{SHELL_URI}/SignalResponse", "<rsp:SignalResponse/>"

    def _delete(self, shell_id, _body, _timeout):
        del self.shells[shell_id]
        return "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", ""


def _seconds(duration):
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", duration or "")
    return float(match.group(1)) if match else 60.0


class _Handler(http.server.BaseHTTPRequestHandler):
    service = None
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out as two writes: without this, Nagle holds the body 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # the test log needs no line per request
        pass

    def do_POST(self):  # noqa: N802 (the name http.server calls)
        length = int(self.headers.get("Content-Length") or 0)
        document = self.rfile.read(length)
        if self.path.rstrip("/").lower() != "/wsman":
            return self._reply(404, b"")
        if not self._authorized():
            return self._reply(401, b"", {"WWW-Authenticate": 'Basic realm="WSMAN"'})
        if "application/soap+xml" not in self.headers.get("Content-Type", ""):
            return self._reply(415, b"")
        try:
            answer = self.service.handle(document)
        except Fault as fault:
            answer = envelope(
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", "", fault.body("standin")
            )
            return self._reply(500, answer.encode())
        return self._reply(200, answer.encode())

    def _authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) == (self.service.host.username, self.service.host.password)

    def _reply(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(folder, sock_dir, username, password, minion_overrides=None, port=0):
    """Start a stand-in host with its own CA under ``folder``; returns the running service."""
    folder = pathlib.Path(folder)
    tls = folder / "tls"
    if (tls / "ca.pem").exists():
        certificates = tuple(str(tls / name) for name in ("ca.pem", "server.pem", "server.key"))
    else:
        certificates = make_certificates(tls)
    host = WindowsHost(folder / "disk", sock_dir, username, password, minion_overrides)
    (host.path(r"C:\Windows\Temp")).mkdir(parents=True, exist_ok=True)
    return WinRMService(host, certificates, port).start()


if __name__ == "__main__":
    running = serve(sys.argv[1], sys.argv[2], "Administrator", "standin-password")
    print(f"WinRM stand-in on {running.endpoint}, CA {running.ca}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop()
