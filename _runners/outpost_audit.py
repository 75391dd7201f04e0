"""
Read the audit trail on the master: what auditors run through salt-api (``@runner`` access to
``outpost_audit.*`` only). The trail is written by the ``outpost_audit`` returner; see
``_utils/outpost_audit.py``.
"""

import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_audit
import outpost_jobcache
import outpost_logs

log = logging.getLogger(__name__)

__virtualname__ = "outpost_audit"


def __virtual__():
    return __virtualname__


def _records():
    return outpost_audit.Trail(outpost_logs.audit_settings(__opts__)["trail"]).records()


def verify(expect_head=None):
    """
    Check every hash and link of the audit trail; name any record changed, removed, inserted or
    reordered.

    expect_head
        ``<seq>:<hash>`` noted from an earlier verify, to see whether the end was cut off.
        Default: ``None``

    CLI Example:

    .. code-block:: bash

        salt-run outpost_audit.verify
    """
    try:
        return outpost_audit.verify(_records(), expect_head=expect_head)
    except (outpost_audit.TrailUnavailable, outpost_audit.BadTrail) as err:
        raise CommandExecutionError(str(err)) from err


def report(since=None, until=None, client=None, app=None, fmt="text"):
    """
    The audit report: each client's release timeline, rollbacks with reasons, refused requests;
    under a TAMPERED banner when the trail does not verify.

    since, until
        ISO 8601 times (UTC unless a zone is given). Default: the whole trail
    client, app
        Only this client, only this app. Default: all
    fmt
        ``text``, ``csv`` or ``html``. Default: ``text``

    CLI Example:

    .. code-block:: bash

        salt-run outpost_audit.report client=client-1 since=2026-12-01
    """
    try:
        records = _records()
        problems = outpost_audit.verify(records)["problems"]
        chosen = outpost_audit.select(records, since=since, until=until, client=client, app=app)
        return outpost_audit.render(chosen, fmt, problems=problems)
    except outpost_audit.BadTrail as err:
        raise SaltInvocationError(str(err)) from err
    except outpost_audit.TrailUnavailable as err:
        raise CommandExecutionError(str(err)) from err


def create_job_cache():
    """
    Create the PostgreSQL tables of Salt's ``pgjsonb`` master job cache from the
    ``returner.pgjsonb.*`` options; creating them again keeps every row.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_audit.create_job_cache
    """
    return {
        "created": outpost_jobcache.create_schema(**outpost_jobcache.connection_settings(__opts__))
    }
