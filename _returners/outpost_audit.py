"""
Append every job return and every outpost decision to the tamper-evident audit trail.

The master's EventReturn process hands this returner the events it keeps; it is the trail's only
writer, so the chain stays linear. Master configuration::

    event_return: [outpost_audit]
    event_return_whitelist:
      - salt/job/*/new
      - salt/job/*/ret/*
      - salt/run/*/new
      - salt/run/*/ret
      - salt/auth
      - salt/key
      - outpost/*
    outpost:
      audit:
        trail: /var/lib/outpost/audit/trail.jsonl
        security_log: /var/log/outpost/security.jsonl

An ``outpost/*`` event is a decision only when outpost's master signed it (``outpost_events``):
any other is a minion's forgery, kept as a security record "forged outpost event from a minion".
A job's ``new`` event says who started it and against what; its returns are recorded with that.
``saltutil.find_job`` (Salt polling its own jobs) is left out. If the trail cannot be written the
returner logs at critical and drops the batch: a job never fails for its audit record.
"""

import collections
import fnmatch
import logging

import outpost_audit
import outpost_events
import outpost_logs

log = logging.getLogger(__name__)

__virtualname__ = "outpost_audit"

# Jobs whose returns are still expected, newest last; enough for any burst of parallel jobs.
KNOWN_JOBS = 4096
IGNORED_FUNCTIONS = {"saltutil.find_job", "saltutil.running"}
_jobs = collections.OrderedDict()


def __virtual__():
    if __opts__.get("__role") != "master":
        return (False, "outpost_audit returner: it runs on the master only")
    return __virtualname__


def event_return(events):
    """
    Record a batch of events from the master's EventReturn process; never raises.

    CLI Example:

    .. code-block:: bash

        # configured with event_return: [outpost_audit] on the master
    """
    try:
        records, security = _records(events)
    except Exception:  # noqa: BLE001 (a bad event must not stop the EventReturn process)
        log.exception("outpost_audit: could not read a batch of %d events", len(events))
        return
    _store(records, security)


def _records(events):
    records, security = [], []
    for event in events:
        tag, data = event.get("tag", ""), event.get("data") or {}
        if not isinstance(data, dict):
            continue
        record = _record(tag, data)
        if record is None:
            continue
        records.append(record)
        if record["kind"] in ("security", "config"):
            security.append(record)
    return records, security


def _record(tag, data):
    parts = tag.split("/")
    if fnmatch.fnmatch(tag, "salt/*/*/new") and parts[1] in ("job", "run"):
        _remember(parts[2], data)
        return None
    if fnmatch.fnmatch(tag, "salt/job/*/ret/*") or fnmatch.fnmatch(tag, "salt/run/*/ret"):
        if data.get("fun") in IGNORED_FUNCTIONS:
            return None
        return outpost_audit.record_from_job_return(tag, data, _jobs.get(parts[2]))
    if tag.startswith("outpost/"):
        if not outpost_events.verified(__opts__, tag, data):
            why = "bad signature" if outpost_events.SIGNATURE in data else "unsigned"
            return outpost_audit.record_from_forged_event(tag, data, why)
        return outpost_audit.record_from_event(tag, data)
    if tag == "salt/auth" and data.get("result") is not True:
        return outpost_audit.record_from_security(tag, data)
    if tag == "salt/key":
        return outpost_audit.record_from_security(tag, data)
    return None


def _remember(jid, data):
    if data.get("fun") in IGNORED_FUNCTIONS:
        return
    _jobs[jid] = {key: data.get(key) for key in ("fun", "arg", "tgt", "tgt_type", "user")}
    while len(_jobs) > KNOWN_JOBS:
        _jobs.popitem(last=False)


def _store(records, security):
    settings = outpost_logs.audit_settings(__opts__)
    try:
        outpost_audit.Trail(settings["trail"]).append(records)
    except Exception as err:  # noqa: BLE001 (the job goes on whatever the trail's store does)
        log.critical(
            "outpost_audit: audit trail unavailable, %d record(s) not kept: %s", len(records), err
        )
    for record in security:
        fields = {key: value for key, value in record.items() if value is not None}
        outpost_logs.security_event(__opts__, record["function"], fields)
