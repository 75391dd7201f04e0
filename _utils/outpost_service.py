"""
Service backends: the one interface outpost uses to run an app release as a service.

- ``supervisord`` (Linux): a program file per app in supervisord's include folder, driven through
  supervisord's XML-RPC interface (``outpost_supervisor``).
- ``windows``: a WinSW wrapper per app, driven through Salt's ``service`` module (see
  ``outpost_service_windows``).

A backend never builds a shell command line by splicing strings: the command is an argument list
from start to end.
"""

import dataclasses
import os
import re
import shlex
import stat

import salt.utils.platform
from salt.exceptions import CommandExecutionError

# Synced _utils are importable by their bare name while Salt's loader loads a module.
import outpost_service_windows
import outpost_supervisor

INLINE_COMMENT = re.compile(r"\s[;#]")


class ServiceError(CommandExecutionError):
    """The service manager refused or failed an operation."""


@dataclasses.dataclass
class ServiceSpec:
    """Everything a backend needs to define the service of one app release."""

    name: str
    display_name: str
    command: list
    env: dict
    workdir: str
    log_dir: str
    user: str = None
    stop_timeout: int = 30
    # The app's log rotates at this size and keeps this many old files (retention).
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5


class SupervisordBackend:
    """Programs in supervisord, one ``outpost-<app>.conf`` each in its include folder."""

    kind = "supervisord"

    def __init__(self, conf_file, include_dir):
        self.conf_file = conf_file
        self.include_dir = include_dir
        self._supervisor = None

    def _call(self, method, *args, **options):
        try:
            if self._supervisor is None:
                self._supervisor = outpost_supervisor.Supervisor(self.conf_file)
            return self._supervisor.call(method, *args, **options)
        except outpost_supervisor.SupervisorError as err:
            raise ServiceError(str(err)) from None

    def program_path(self, name):
        return os.path.join(self.include_dir, f"{name}.conf")

    def render(self, spec):
        """The program section; ``%`` is doubled because supervisord interpolates it."""
        command = " ".join(shlex.quote(str(part)) for part in spec.command)
        _refuse_line_breaks(command, "args: an argument")
        _refuse_inline_comment(command, "args: an argument")
        environment = ",".join(
            f"{key}={_quote_env(key, value)}" for key, value in sorted(spec.env.items())
        )
        lines = [
            f"[program:{spec.name}]",
            f"command={command.replace('%', '%%')}",
            f"directory={spec.workdir}",
            f"environment={environment.replace('%', '%%')}",
            "autostart=true",
            "autorestart=true",
            # The health gate decides whether a start worked; supervisord need not wait for it.
            "startsecs=0",
            f"stopwaitsecs={int(spec.stop_timeout)}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={os.path.join(spec.log_dir, 'service.log')}",
            f"stdout_logfile_maxbytes={int(spec.log_max_bytes)}",
            f"stdout_logfile_backups={int(spec.log_backups)}",
        ]
        if spec.user:
            lines.append(f"user={spec.user}")
        return "\n".join(lines) + "\n"

    def validate(self, spec):
        """Raise before anything changes when supervisord could not take ``spec``."""
        self.render(spec)

    def define(self, spec):
        """Write the program file if it differs, and load it. Returns whether it changed."""
        # supervisord writes the app's output with its own umask: the folder keeps others out.
        os.makedirs(spec.log_dir, exist_ok=True)
        os.chmod(spec.log_dir, stat.S_IRWXU)
        os.makedirs(self.include_dir, exist_ok=True)
        wanted = self.render(spec)
        path = self.program_path(spec.name)
        try:
            with open(path, encoding="utf-8") as stream:
                if stream.read() == wanted:
                    return False
        except FileNotFoundError:
            pass

        # The program file carries the app's environment: owner-only.
        handle = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(wanted)
        os.chmod(path + ".new", stat.S_IRUSR | stat.S_IWUSR)
        os.replace(path + ".new", path)
        return True

    def protect_folder(self, path, user=None):
        """Files holding the environment are written owner-only (0600). An app with a service
        account of its own must own its folder: shiv extracts into SHIV_ROOT as that account."""
        if not user:
            return
        import pwd  # pylint: disable=import-outside-toplevel

        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise ServiceError(f"user: there is no account named {user} on this minion") from None
        for folder, _, files in os.walk(path):
            for entry in (folder, *(os.path.join(folder, name) for name in files)):
                os.chown(entry, account.pw_uid, account.pw_gid)

    def apply(self, name):
        """Load a changed program file, as ``supervisorctl update <name>`` does: a changed
        program is stopped and added again, and starts on its new definition (autostart)."""
        added, changed, removed = self._call("reloadConfig")[0]
        if name in changed or name in removed:
            # stopProcessGroup answers on supervisord's next tick, a second later; stopProcess
            # answers as soon as the program has exited.
            self.stop(name)
            self._call("removeProcessGroup", name, tolerate=(outpost_supervisor.BAD_NAME,))
        if name in changed or name in added:
            self._call("addProcessGroup", name, tolerate=(outpost_supervisor.ALREADY_ADDED,))

    def start(self, name):
        self._call("startProcess", name, True, tolerate=(outpost_supervisor.ALREADY_STARTED,))

    def stop(self, name):
        """Stop and wait for the exit, which stopwaitsecs bounds; a stopped program is left."""
        not_running = (outpost_supervisor.NOT_RUNNING, outpost_supervisor.BAD_NAME)
        self._call(
            "stopProcess", name, True, tolerate=not_running, timeout=outpost_supervisor.STOP_TIMEOUT
        )

    def restart(self, name):
        self.stop(name)
        self.start(name)

    def status(self, name):
        info = self._call("getProcessInfo", name, tolerate=(outpost_supervisor.BAD_NAME,))
        if info is None:
            return {"state": "ABSENT", "running": False, "pid": None}
        state = info["statename"]
        return {"state": state, "running": state == "RUNNING", "pid": info["pid"] or None}

    def remove(self, name):
        path = self.program_path(name)
        if not os.path.exists(path):
            return False
        os.remove(path)
        # apply stops a program whose file went, then removes it from supervisord.
        self.apply(name)
        return True


def _refuse_line_breaks(text, what):
    """A line break would end the option and start a line of the program file's own."""
    if "\n" in text or "\r" in text:
        raise ServiceError(f"{what} holds a line break, which would end supervisord's option")


def _refuse_inline_comment(text, what):
    """supervisord's INI reader cuts a line at a ``;`` or ``#`` that follows white space."""
    if INLINE_COMMENT.search(text):
        raise ServiceError(f"{what} holds ';' or '#' after a space, which supervisord cuts off")


def _quote_env(key, value):
    """supervisord splits ``environment`` with a non-POSIX shlex: no escapes, and it strips quote
    characters from both ends of each value. Quote with the kind the value lacks, or refuse."""
    value = str(value)
    _refuse_line_breaks(f"{key}={value}", f"env: {key} or its value")
    _refuse_inline_comment(value, f"env: the value of {key}")
    quotes = "\"'"
    if value and (value[0] in quotes or value[-1] in quotes):
        raise ServiceError(
            f"env: the value of {key} starts or ends with a quote, which supervisord drops"
        )
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ServiceError(
        f"env: the value of {key} holds both kinds of quote, which supervisord cannot take"
    )


def backend_for(salt_funcs, config_get):
    """Pick the backend for this minion from its platform and outpost configuration."""
    if salt.utils.platform.is_windows():
        # The formula installs WinSW under the outpost root; these follow it unless set apart.
        root = config_get("outpost:root", "C:\\outpost")
        return outpost_service_windows.WindowsBackend(
            salt_funcs,
            service_dir=config_get("outpost:windows:service_dir", root + "\\services"),
            winsw_path=config_get("outpost:windows:winsw_path", root + "\\bin\\winsw.exe"),
        )
    conf_file = config_get("outpost:supervisor:conf_file", "/etc/supervisor/supervisord.conf")
    return SupervisordBackend(
        conf_file=conf_file,
        include_dir=config_get(
            "outpost:supervisor:include_dir", os.path.join(os.path.dirname(conf_file), "conf.d")
        ),
    )
