"""
Windows minions over WinRM: bootstrap a new host, recover one whose minion went silent.

``bootstrap`` and ``recover`` are for operators; ``handle_missing`` is what
``reactor/client_missing.sls`` calls on ``outpost/client/<client>/missing``. Each announces what
it did: ``outpost/winrm/<minion>/bootstrapped``, ``outpost/winrm/<minion>/recovered`` (or
``.../failed``), and for the reactor ``outpost/remediation/<client>/salt-minion/<decision>``
(``recover``, ``throttled``, ``merged``, ``alert``). The logic and its configuration are in
``_utils/outpost_winrm.py``.
"""

import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_events
import outpost_registry
import outpost_winrm

log = logging.getLogger(__name__)

__virtualname__ = "outpost_winrm"


def __virtual__():
    try:
        import winrm  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return False, "outpost_winrm: the master needs pywinrm"
    return __virtualname__


def _emit(tag, data):
    outpost_events.fire(__opts__, tag, data)


def _announced(minion_id, what, function, *args):
    """Run one step for a host, announce how it ended; failures return as a sentence."""
    try:
        report = function(__opts__, minion_id, *args)
    except (CommandExecutionError, SaltInvocationError) as err:
        log.error("WinRM %s of %s failed: %s", what, minion_id, err)
        _emit(f"outpost/winrm/{minion_id}/failed", {"step": what, "reason": str(err)})
        return {"result": False, "comment": f"{what} of {minion_id} failed: {err}"}
    _emit(f"outpost/winrm/{minion_id}/{what}", dict(report, time=time.time()))
    return dict(report, result=True)


def bootstrap(minion_id, force=False):
    """
    Install, key and start a Salt minion on a Windows host over WinRM, then wait until it
    answers ``test.ping``.

    minion_id
        The host's entry under ``outpost:winrm:hosts``; becomes the minion id.

    force
        Replace a key the master already has for this minion id. Default: ``False``.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_winrm.bootstrap shop-01
    """
    return _announced(minion_id, "bootstrapped", outpost_winrm.bootstrap, bool(force))


def recover(minion_id):
    """
    Restart a Windows host's salt-minion service over WinRM, then wait until it answers.

    minion_id
        The host's entry under ``outpost:winrm:hosts``.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_winrm.recover shop-01
    """
    return _announced(minion_id, "recovered", outpost_winrm.recover)


def handle_missing(tag, data=None):
    """
    Recover a client the health runner reported missing, at most once per
    ``outpost:winrm:recover_interval``; the reactor calls this.

    tag
        ``outpost/client/<client>/missing``.

    data
        The event's data (unused: the tag names the client). Default: ``None``.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_winrm.handle_missing outpost/client/shop-01/missing
    """
    registry = outpost_registry.Registry.from_opts(__opts__)
    return outpost_winrm.handle_missing(__opts__, registry, tag, _emit)
