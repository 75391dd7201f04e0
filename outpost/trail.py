"""
The audit trail: every job return and every outpost decision, as a JSON lines file whose records
are chained by SHA-256, so that a changed, removed, inserted or reordered record shows.

Each line is one record::

    {"seq": 7, "time": "2026-12-03T23:40:01.123+00:00", "kind": "job", "jid": "2026...",
     "function": "state.apply", "arguments": ["outpost.apps"], "user": "ops", "target": "client-1",
     "minion": "client-1", "result": true, "retcode": 0, "changes": ["hello: version"],
     "app": "hello", "release": "1.1.0", "reason": null, "tag": "salt/job/.../ret/client-1",
     "prev": "<hash of record 6>", "hash": "<sha256 of this record without its hash>"}

The first record's ``prev`` is 64 zeros. One writer (the master's ``outpost_audit`` event
returner) appends under an exclusive lock, so the chain stays linear. ``verify`` needs nothing but
the file: it recomputes every hash and link and names the first record that does not fit.

The chain proves the order and content of what it holds; it cannot prove that nothing was cut off
its end. An auditor who notes the head (``outpost audit verify`` prints it) and passes it to a
later ``verify --expect-head`` closes that gap.
"""

import csv
import datetime
import fcntl
import hashlib
import html
import io
import json
import os
import re

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

GENESIS = "0" * 64
KINDS = ("job", "release", "remediation", "security", "alert", "config", "client", "winrm")
REDACTED = "***"
# Argument names whose values are never written down: passwords, tokens, environment values.
SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|bearer|signature|credential|private|api[_-]?key|^key$|_key$|"
    r"^env$|environ|auth|cookie|session|dsn",
    re.I,
)
# Secrets inside a value: ``password=...`` in a DSN, ``user:password@`` in a URL, a bearer token.
SECRET_IN_TEXT = (
    (
        re.compile(r"\b(pass(?:word)?|passwd|pwd|secret|token|api[_-]?key)=[^\s;&,]+", re.I),
        r"\1=***",
    ),
    (re.compile(r"(://[^/:@\s]*:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"\b(bearer|basic)\s+\S+", re.I), r"\1 ***"),
)
SEMVER_PREFIX = re.compile(r"^(?P<app>[a-z][a-z0-9_-]*) (?P<version>\d+\.\d+\.\d+\S*?):? ")
TEXT_LIMIT = 300


class TrailUnavailable(CommandExecutionError):
    """The trail file cannot be read or written; the message names it and why."""


class BadTrail(SaltInvocationError):
    """A trail argument (a time range, a format) is wrong; the message names it."""


# -- records from events ------------------------------------------------------------------------


def redact(value, name=""):
    """A copy of ``value`` with the values of secret-looking names replaced by ``***``."""
    if name and SECRET_NAME.search(str(name)):
        if isinstance(value, dict):
            return {key: REDACTED for key in value}
        return REDACTED
    if isinstance(value, dict):
        return {key: redact(item, key) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _redact_text(value)
    return value


def _redact_text(text):
    """A ``key=value`` argument is read as Salt reads it (the value is YAML, so
    ``pillar={"token": "x"}`` is a dict) and redacted by its name and content."""
    key, equals, rest = text.partition("=")
    if equals and key and re.fullmatch(r"[A-Za-z_][\w.-]*", key):
        if SECRET_NAME.search(key):
            return f"{key}={REDACTED}"
        parsed = _yaml_value(rest)
        if isinstance(parsed, (dict, list)):
            return f"{key}={json.dumps(redact(parsed, key), sort_keys=True, default=str)}"
    for pattern, replacement in SECRET_IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _yaml_value(text):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _iso(stamp=None):
    if isinstance(stamp, str) and stamp:
        return _normalize_time(stamp)
    moment = datetime.datetime.now(datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def _normalize_time(text):
    """Salt stamps events ``2026-12-03T23:40:01.123456`` in UTC without a zone."""
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _blank(kind, tag, data):
    return {
        "time": _iso(data.get("_stamp")),
        "kind": kind,
        "tag": tag,
        "jid": data.get("jid"),
        "function": None,
        "arguments": None,
        "user": None,
        "target": None,
        "minion": None,
        "result": None,
        "retcode": None,
        "changes": None,
        "app": None,
        "release": None,
        "reason": None,
    }


def record_from_job_return(tag, data, job=None):
    """A record of one return (``salt/job/<jid>/ret/<minion>`` or ``salt/run/<jid>/ret``);
    ``job`` is the job's ``new`` event, which says who started it and against what."""
    job = job or {}
    record = _blank("job", tag, data)
    returned = data.get("return")
    arguments = data.get("fun_args", job.get("arg"))
    record.update(
        function=data.get("fun") or job.get("fun"),
        arguments=redact(arguments if arguments is not None else []),
        user=job.get("user") or data.get("user"),
        target=_target(job),
        minion=data.get("id"),
        result=_success(data),
        retcode=data.get("retcode"),
        changes=summarize_changes(returned),
    )
    record.update(_release_of(returned, record["arguments"], record["function"]))
    return record


def _target(job):
    tgt = job.get("tgt")
    if tgt is None:
        return None
    tgt = ",".join(tgt) if isinstance(tgt, list) else str(tgt)
    kind = job.get("tgt_type") or "glob"
    return tgt if kind == "glob" else f"{kind}:{tgt}"


def _success(data):
    if "success" in data:
        return bool(data["success"])
    returned = data.get("return")
    if _is_state_return(returned):
        return all(item.get("result") is not False for item in returned.values())
    return data.get("retcode", 0) == 0


def _is_state_return(returned):
    return (
        isinstance(returned, dict)
        and bool(returned)
        and all(isinstance(item, dict) and "changes" in item for item in returned.values())
    )


def summarize_changes(returned):
    """What a return changed, in a few words: ``["hello: installed, version"]`` for a state run,
    ``None`` for a function that reports no changes."""
    if not _is_state_return(returned):
        return None
    summary = []
    for item in sorted(returned.values(), key=lambda state: state.get("__run_num__", 0)):
        name = item.get("name", "?")
        if item.get("result") is False:
            summary.append(f"{name}: failed: {_short(item.get('comment', ''))}")
        elif item.get("changes"):
            summary.append(f"{name}: {', '.join(sorted(item['changes']))}")
    return summary


def _short(text):
    text = " ".join(str(text).split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _release_of(returned, arguments, function):
    """The app and release a job acted on: a shiv_app state's version, or shiv_app's args."""
    if _is_state_return(returned):
        for key, item in returned.items():
            if not key.startswith("shiv_app_|-"):
                continue
            changes = item.get("changes") or {}
            version = changes.get("version")
            if isinstance(version, dict):
                return {"app": item.get("name"), "release": version.get("new")}
            if changes.get("installed"):
                return {"app": item.get("name"), "release": changes["installed"]}
            said = SEMVER_PREFIX.match(str(item.get("comment", "")))
            if said:
                return {"app": said["app"], "release": said["version"]}
    if str(function or "").startswith("shiv_app.") and arguments:
        plain = [arg for arg in arguments if isinstance(arg, str) and "=" not in arg]
        found = {"app": plain[0] if plain else None}
        if len(plain) > 1 and re.fullmatch(r"\d+\.\d+\.\d+\S*", plain[1]):
            found["release"] = plain[1]
        return found
    return {}


def record_from_event(tag, data):
    """A record of an outpost decision: ``outpost/release/<app>/<version>/<phase>``,
    ``outpost/remediation/<client>/<app>/<decision>``, ``outpost/security/...``,
    ``outpost/alert/<client>/<app>``, ``outpost/client/<client>/missing``,
    ``outpost/winrm/<client>/<step>``."""
    parts = tag.split("/")
    kind = parts[1] if len(parts) > 1 else "outpost"
    record = _blank(kind if kind in KINDS else "config", tag, data)
    record["reason"] = data.get("reason")
    if kind == "release" and len(parts) >= 5:
        record.update(app=parts[2], release=parts[3], function=f"rollout {parts[4]}")
        record["changes"] = _phase_summary(data)
        record["target"] = ",".join(data.get("clients_moved") or data.get("names") or []) or None
    elif kind in ("remediation", "alert") and len(parts) >= 4:
        record.update(minion=parts[2], app=parts[3])
        record["function"] = f"remediation {parts[4]}" if len(parts) > 4 else "alert"
        record["release"] = data.get("version") or data.get("release")
    elif kind in ("client", "winrm") and len(parts) >= 4:
        record.update(minion=parts[2], function=f"{kind} {parts[3]}")
    else:
        record["function"] = "/".join(parts[1:]) or tag
    record["arguments"] = None
    return record


def _phase_summary(data):
    keep = ("rollout", "total", "online", "offline", "batch", "clients", "healthy", "failed")
    keep += ("rolled_back", "failed_to_converge", "pending")
    summary = [f"{key}={data[key]}" for key in keep if key in data]
    return summary or None


FORGED = "forged outpost event from a minion"


def record_from_forged_event(tag, data, why):
    """A security record of an ``outpost/*`` event that outpost's master did not sign: a minion
    sent it. It is never recorded as the decision it pretends to be."""
    record = _blank("security", tag, data)
    sender = data.get("id")
    record.update(function=FORGED, reason=why, minion=sender if isinstance(sender, str) else None)
    return record


def record_from_security(tag, data):
    """A record of a refused minion key or a key change: ``salt/auth`` and ``salt/key``."""
    record = _blank("security" if tag == "salt/auth" else "config", tag, data)
    record.update(
        minion=data.get("id"),
        function=f"{tag.split('/')[-1]} {data.get('act', '')}".strip(),
        result=data.get("result"),
    )
    return record


# -- the chained file ---------------------------------------------------------------------------


def canonical(record):
    """The bytes a record's hash covers: every field but ``hash``, sorted, no white space."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record):
    return hashlib.sha256(canonical(record)).hexdigest()


class Trail:
    """One trail file; ``append`` adds records under an exclusive lock on ``<path>.lock``."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def append(self, records):
        """Chain and write ``records``; returns them with ``seq``, ``prev`` and ``hash``."""
        if not records:
            return []
        try:
            folder = os.path.dirname(self.path) or "."
            os.makedirs(folder, mode=0o750, exist_ok=True)
            with open(self.path + ".lock", "a", encoding="utf-8") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                seq, prev = self._head()
                chained = []
                for record in records:
                    seq += 1
                    entry = dict(record, seq=seq, prev=prev)
                    entry["hash"] = prev = record_hash(entry)
                    chained.append(entry)
                self._write(chained)
        except OSError as err:
            raise TrailUnavailable(f"audit trail {self.path}: {err.strerror or err}") from err
        return chained

    def _write(self, chained):
        lines = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in chained)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        with os.fdopen(descriptor, "a", encoding="utf-8") as trail:
            trail.write(lines)
            trail.flush()
            os.fsync(trail.fileno())

    def _head(self):
        """The last record's seq and hash, read from the end of the file."""
        last = _last_line(self.path)
        if not last:
            return 0, GENESIS
        try:
            entry = json.loads(last)
            return int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError, RecursionError) as err:
            raise TrailUnavailable(
                f"audit trail {self.path}: its last line is not a record; run outpost audit "
                "verify before anything is added to it"
            ) from err

    def records(self):
        """Every record, in file order; a line that is not a well-formed record is kept as
        ``{"_line": N, "_unreadable": "why"}`` for ``verify`` to name."""
        try:
            with open(self.path, "rb") as trail:
                lines = trail.read().split(b"\n")
        except FileNotFoundError:
            return []
        except OSError as err:
            raise TrailUnavailable(f"audit trail {self.path}: {err.strerror or err}") from err
        return [_parse(number, line) for number, line in enumerate(lines, 1) if line.strip()]


def _last_line(path, chunk=8192):
    try:
        with open(path, "rb") as trail:
            trail.seek(0, os.SEEK_END)
            end = position = trail.tell()
            tail = b""
            while position > 0 and tail.count(b"\n") < 2:
                position = max(0, position - chunk)
                trail.seek(position)
                tail = trail.read(end - position)
    except FileNotFoundError:
        return ""
    lines = [line for line in tail.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# What every record must hold for the chain to be checked at all; anything else is the content
# its hash covers.
REQUIRED = {"seq": int, "prev": str, "hash": str, "time": str, "kind": str, "tag": str}


def _parse(number, raw):
    """One line, read defensively: whatever is in it, the verifier must not crash on it."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _malformed(number, "not UTF-8")
    except ValueError:
        return _malformed(number, "not JSON")
    except RecursionError:
        return _malformed(number, "nested too deeply")
    if not isinstance(entry, dict):
        return _malformed(number, "not a JSON object")
    why = _shape_problem(entry)
    if why:
        return _malformed(number, why)
    entry["_line"] = number
    return entry


def _malformed(number, why):
    return {"_line": number, "_unreadable": why}


def _shape_problem(entry):
    for key, kind in REQUIRED.items():
        if key not in entry:
            return f"no {key!r}"
        value = entry[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key!r} is {type(value).__name__}, not {kind.__name__}"
    for key in ("prev", "hash"):
        if not re.fullmatch(r"[0-9a-f]{64}", entry[key]):
            return f"{key!r} is not 64 hex digits"
    try:
        parse_time(entry["time"], "time")
    except BadTrail:
        return "'time' is not an ISO 8601 time"
    return None


# -- verifying ----------------------------------------------------------------------------------


def verify(records, expect_head=None):
    """
    Check every hash and link. Returns ``{"ok", "count", "head", "problems"}``; each problem
    names the record (seq and line) and what happened to it: changed, removed, inserted,
    reordered, unreadable, or the end cut off (against ``expect_head``, ``"<seq>:<hash>"``).
    """
    problems = []
    hashes = {entry.get("hash"): index for index, entry in enumerate(records)}
    linked_to = {entry.get("prev") for entry in records}
    prev_hash, prev_seq = GENESIS, 0
    for index, entry in enumerate(records):
        problem = _check(entry, index, records, (hashes, linked_to), prev_hash, prev_seq)
        if problem:
            problems.append(problem)
        if entry.get("_unreadable"):
            # The unreadable line stands for one record; the next one is checked from there.
            prev_hash, prev_seq = None, prev_seq + 1
        else:
            prev_hash, prev_seq = entry.get("hash"), _as_int(entry.get("seq"), prev_seq)
    head = f"{prev_seq}:{prev_hash or '?'}" if records else f"0:{GENESIS}"
    if expect_head:
        problems += _check_head(expect_head, records)
    return {"ok": not problems, "count": len(records), "head": head, "problems": problems}


def _as_int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _name(entry):
    return f"record seq {entry.get('seq')} (line {entry['_line']})"


def _check(entry, index, records, links, prev_hash, prev_seq):
    if entry.get("_unreadable"):
        return f"line {entry['_line']}: malformed: {entry['_unreadable']} (changed)"
    if record_hash(_stored(entry)) != entry.get("hash"):
        return f"{_name(entry)} was changed: its hash does not match its content"
    if prev_hash is None or entry.get("prev") == prev_hash:
        return None

    hashes, linked_to = links
    linked = hashes.get(entry.get("prev"))
    seq = _as_int(entry.get("seq"), 0)
    if linked is not None and linked > index:
        return f"{_name(entry)} is out of order (reordered): it belongs after seq {prev_seq + 1}"
    if linked is not None and linked < index - 1:
        # Records some other record links to were moved, not made up: the move is reported
        # where it shows first.
        extra = [item for item in records[linked + 1 : index] if item.get("hash") not in linked_to]
        if not extra:
            return None
        names = ", ".join(_name(item) for item in extra)
        return f"{names} inserted: not part of the chain before {_name(entry)}"
    if linked == index - 1 and index > 0:
        return None
    if seq > prev_seq + 1:
        gone = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seq {prev_seq + 1}-{seq - 1}"
        return f"record(s) {gone} removed before {_name(entry)}"
    if seq <= prev_seq:
        return f"{_name(entry)} is out of order (reordered or inserted) after seq {prev_seq}"
    return (
        f"record seq {prev_seq} (line {entry['_line'] - 1}) was changed and rehashed: "
        f"{_name(entry)} does not link to it"
    )


def _stored(entry):
    return {key: value for key, value in entry.items() if key != "_line"}


def _check_head(expect_head, records):
    seq_text, _, expected = str(expect_head).partition(":")
    seq = _as_int(seq_text, None)
    if seq is None or not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise BadTrail(f"expect_head: {expect_head!r} is not <seq>:<64 hex digits>")
    for entry in records:
        if _as_int(entry.get("seq"), None) == seq:
            if entry.get("hash") == expected:
                return []
            return [f"{_name(entry)} is not the head noted earlier (changed)"]
    return [f"record seq {seq}, the head noted earlier, is missing: the end was cut off (removed)"]


# -- reporting ----------------------------------------------------------------------------------


def parse_time(text, field):
    """ISO 8601 (a date, or a date and time; UTC unless a zone is given)."""
    if text in (None, ""):
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(text))
    except ValueError:
        raise BadTrail(f"{field}: {text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def select(records, since=None, until=None, client=None, app=None):
    """The readable records within ``[since, until)`` for ``client`` and ``app``."""
    start, end = parse_time(since, "since"), parse_time(until, "until")
    chosen = []
    for entry in records:
        if entry.get("_unreadable"):
            continue
        moment = parse_time(entry.get("time"), "time")
        if (start and moment < start) or (end and moment >= end):
            continue
        if client and not _concerns(entry, client):
            continue
        if app and entry.get("app") not in (None, app):
            continue
        if app and entry.get("app") is None and entry.get("kind") != "security":
            continue
        chosen.append(entry)
    return chosen


def _concerns(entry, client):
    if entry.get("minion") == client:
        return True
    if entry.get("kind") == "release":
        return client in (entry.get("target") or "").split(",")
    return entry.get("kind") == "security"


def build_report(records):
    """The report's sections: each client's release timeline, rollouts, rollbacks, refusals."""
    timeline = {}
    rollouts = []
    rollbacks = []
    refused = []
    for entry in records:
        kind = entry.get("kind")
        if kind == "job" and entry.get("minion") and entry.get("release") and _acted(entry):
            timeline.setdefault(entry["minion"], []).append(_timeline_row(entry))
        elif kind == "release":
            rollouts.append(entry)
            if entry["tag"].endswith("/halted"):
                rollbacks.append(_rollback_row(entry, "rollout halted"))
        elif kind == "remediation" and entry["tag"].endswith("/rollback"):
            rollbacks.append(_rollback_row(entry, "remediation"))
        elif kind == "security":
            refused.append(entry)
    return {"timeline": timeline, "rollouts": rollouts, "rollbacks": rollbacks, "refused": refused}


def _acted(entry):
    """A state run that changed nothing is a confirmation, not a step in the timeline."""
    return entry.get("result") is False or entry.get("changes") != []


def _timeline_row(entry):
    return {
        "time": entry["time"],
        "app": entry.get("app"),
        "release": entry.get("release"),
        "result": "ok" if entry.get("result") else "failed",
        "function": entry.get("function"),
        "user": entry.get("user"),
        "changes": "; ".join(entry.get("changes") or []),
        "seq": entry.get("seq"),
    }


def _rollback_row(entry, source):
    return {
        "time": entry["time"],
        "app": entry.get("app"),
        "release": entry.get("release"),
        "clients": entry.get("target") or entry.get("minion") or "",
        "source": source,
        "reason": entry.get("reason") or "",
        "seq": entry.get("seq"),
    }


def render(records, fmt="text", title="outpost audit report", problems=()):
    """The report as ``text``, ``csv`` (one row per record) or ``html`` (one self-contained
    page); ``problems`` from ``verify`` put a TAMPERED banner on top."""
    banner = _banner(problems)
    if fmt == "csv":
        return "".join(f"# {line}\n" for line in banner) + _csv(records)
    report = build_report(records)
    if fmt == "html":
        return _html(report, records, title, banner)
    if fmt == "text":
        return "".join(f"{line}\n" for line in banner) + _text(report, records, title)
    raise BadTrail(f"format: {fmt!r} is not one of text, csv, html")


def _banner(problems):
    if not problems:
        return []
    head = f"TAMPERED: the audit trail does not verify ({len(problems)} problem(s))"
    return [head] + [f"TAMPERED: {_one_line(problem)}" for problem in problems]


def _one_line(text):
    return " ".join(str(text).split())


CSV_FIELDS = (
    "seq",
    "time",
    "kind",
    "jid",
    "user",
    "target",
    "minion",
    "function",
    "app",
    "release",
    "result",
    "retcode",
    "reason",
    "changes",
    "arguments",
    "tag",
    "hash",
)


def _csv(records):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for entry in records:
        row = []
        for field in CSV_FIELDS:
            value = entry.get(field)
            if isinstance(value, (list, dict)):
                value = json.dumps(value, sort_keys=True)
            row.append("" if value is None else value)
        writer.writerow(row)
    return out.getvalue()


def _table(rows, columns):
    if not rows:
        return ["  (none)"]
    cells = [list(columns)] + [
        [str(row.get(column) if row.get(column) is not None else "") for column in columns]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]


TIMELINE_COLUMNS = ("time", "app", "release", "result", "user", "function", "changes")
ROLLBACK_COLUMNS = ("time", "app", "release", "clients", "source", "reason")
ROLLOUT_COLUMNS = ("time", "app", "release", "function", "changes", "reason")
REFUSED_COLUMNS = ("time", "function", "minion", "reason")


def _rollout_rows(rollouts):
    return [dict(entry, changes=" ".join(entry.get("changes") or [])) for entry in rollouts]


def _text(report, records, title):
    lines = [title, f"{len(records)} records", "", "Release timeline per client:"]
    for client in sorted(report["timeline"]):
        lines += [f" {client}:"] + _table(report["timeline"][client], TIMELINE_COLUMNS)
    if not report["timeline"]:
        lines.append("  (none)")
    lines += ["", "Rollbacks:"] + _table(report["rollbacks"], ROLLBACK_COLUMNS)
    lines += ["", "Rollout phases:"] + _table(_rollout_rows(report["rollouts"]), ROLLOUT_COLUMNS)
    lines += ["", "Refused requests:"] + _table(report["refused"], REFUSED_COLUMNS)
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:0 0 1.5em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#eee}
tr.failed td,tr.rollback td{background:#fde2e2}
tr.ok td{background:#e6f4e6}
p.tampered{background:#b00020;color:#fff;font-weight:bold;padding:.5em}
"""


def _html_table(rows, columns, row_class):
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = []
    for row in rows:
        cells = "".join(
            f"<td>{html.escape(str(row.get(c) if row.get(c) is not None else ''))}</td>"
            for c in columns
        )
        seq = html.escape(str(row.get("seq")))
        body.append(f'<tr class="{html.escape(row_class(row))}" data-seq="{seq}">')
        body.append(f"{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(report, records, title, banner=()):
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="tampered">{html.escape(line)}</p>' for line in banner),
        f"<p>{len(records)} records</p>",
        "<h2>Release timeline per client</h2>",
    ]
    for client in sorted(report["timeline"]):
        parts.append(f'<h3 id="client-{html.escape(client)}">{html.escape(client)}</h3>')
        parts.append(
            _html_table(report["timeline"][client], TIMELINE_COLUMNS, lambda row: row["result"])
        )
    parts.append('<h2 id="rollbacks">Rollbacks</h2>')
    parts.append(_html_table(report["rollbacks"], ROLLBACK_COLUMNS, lambda row: "rollback"))
    parts.append("<h2>Rollout phases</h2>")
    parts.append(_html_table(_rollout_rows(report["rollouts"]), ROLLOUT_COLUMNS, lambda r: ""))
    parts.append('<h2 id="refused">Refused requests</h2>')
    parts.append(_html_table(report["refused"], REFUSED_COLUMNS, lambda row: "refused"))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
