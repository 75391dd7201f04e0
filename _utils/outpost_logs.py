"""
outpost's logs as JSON lines, and the security event stream.

- ``outpost:logs:file``: every record of outpost's own code (its runners, returners, beacons and
  libraries) as one JSON object a line: time, level, logger, process, message.
- ``outpost:audit:security_log``: security events only, one JSON object a line: refused release
  announcements, refused minion keys, key changes, and Salt's own authentication and
  authorization failures (which Salt only logs).
- ``outpost:audit:trail``: the audit trail (see ``outpost_audit``).

Defaults sit beside the master's own log file and cache. Files are opened in append mode for each
write, so several master processes can share them and logrotate may move them away.
"""

import datetime
import json
import logging
import os

log = logging.getLogger(__name__)

# Salt's own words for a refused login or call; it logs them and fires no event.
AUTH_FAILURES = (
    "Authentication failure",
    "Authorization failure",
    "Authentication error",
    "Authorization error",
    "eauth system",
)
OUTPOST_LOGGERS = ("outpost", "salt.loaded.ext.runners.outpost", "salt.loaded.ext.returners.out")


def _log_dir(opts):
    log_file = str(opts.get("log_file") or "")
    if "://" in log_file or not log_file:
        return os.path.join(opts.get("cachedir", "/var/cache/salt/master"), "outpost")
    return os.path.dirname(log_file)


def audit_settings(opts):
    """Where the trail, the security stream and the JSON log go."""
    outpost = opts.get("outpost") or {}
    audit = outpost.get("audit") or {}
    logs = outpost.get("logs") or {}
    cache = os.path.join(opts.get("cachedir", "/var/cache/salt/master"), "outpost")
    return {
        "trail": audit.get("trail") or os.path.join(cache, "audit-trail.jsonl"),
        "security_log": audit.get("security_log")
        or os.path.join(_log_dir(opts), "outpost-security.jsonl"),
        "log_file": logs.get("file") or os.path.join(_log_dir(opts), "outpost.jsonl"),
        "log_level": str(logs.get("level") or "info").upper(),
    }


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def append_line(path, entry):
    """Append one JSON line; a failure is logged, never raised."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    except OSError as err:
        log.critical("outpost: cannot write %s: %s", path, err)


def security_event(opts, event, fields=None):
    """One line on the security stream: ``{"time", "event", ...fields}``."""
    entry = {"time": _now(), "event": event}
    entry.update({key: value for key, value in (fields or {}).items() if key not in entry})
    append_line(audit_settings(opts)["security_log"], entry)


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object."""

    def format(self, record):
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True, default=str)


class JsonLinesHandler(logging.Handler):
    """Appends each record as a JSON line to ``path``, reopening it each time (see above)."""

    def __init__(self, path, level=logging.INFO, accept=None):
        super().__init__(level)
        self.path = path
        self.accept = accept
        self.setFormatter(JsonFormatter())

    def filter(self, record):
        return super().filter(record) and (self.accept is None or self.accept(record))

    def emit(self, record):
        try:
            line = self.format(record) + "\n"
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
                stream.write(line)
        except Exception:  # noqa: BLE001 (logging must never break the caller)
            self.handleError(record)


def is_outpost_record(record):
    name = record.name
    return name.startswith(OUTPOST_LOGGERS) or ".outpost_" in name or name.startswith("outpost_")


def is_auth_failure(record):
    return record.levelno >= logging.WARNING and any(
        words in str(record.msg) for words in AUTH_FAILURES
    )


class SecurityHandler(JsonLinesHandler):
    """Salt's authentication and authorization failures, as security events."""

    def format(self, record):
        entry = json.loads(super().format(record))
        entry["event"] = "auth-failure"
        return json.dumps(entry, sort_keys=True, default=str)


def handlers(opts):
    """The JSON log handler and the security handler the master's log_handlers module adds."""
    settings = audit_settings(opts)
    for path in (settings["log_file"], settings["security_log"]):
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        except OSError as err:
            # Logging must come up even when its folder cannot: each write reports its failure.
            log.critical("outpost: cannot create the folder of %s: %s", path, err)
    level = getattr(logging, settings["log_level"], logging.INFO)
    return [
        JsonLinesHandler(settings["log_file"], level, accept=is_outpost_record),
        SecurityHandler(settings["security_log"], logging.WARNING, accept=is_auth_failure),
    ]
