"""
Releases from CI to clients: check the announcement, record it, and roll it out in batches.

The reactor hands ``salt/netapi/hook/outpost/release`` events to ``receive``. Everything about the
request is checked before anything acts (see ``_utils/outpost_webhook.py``); which clients get the
release, in which order, comes from the master's own configuration::

    outpost:
      webhook:
        secret: <shared with CI>          # the HMAC key of release announcements
      releases:
        signing_keys: [<base64 Ed25519 public key>]
        allowlist: ["salt://releases/"]
      apps:
        hello:
          clients: [client-1, client-2, client-3]   # or a glob such as "shop-*"
          canary: 1          # clients in the canary ring: a count or "10%"
          batch: "50%"       # the rest, in batches of this size
          soak: 0            # seconds the health gate holds before the next batch
          max_failures: 0    # failed clients a batch may have and still pass
          state_timeout: 300 # seconds a client has to return its state run, or it failed

A rollout runs as the orchestration ``orch.rollout``: promote a batch in the registry (so the
client's pillar names the release), apply ``outpost.apps`` to it, then hold the health gate. A
failing batch halts the rollout and every client moved by it goes back to its previous release.
Progress is published as ``outpost/release/<app>/<version>/<phase>`` events.
"""

import fnmatch
import logging
import math
import time

import salt.client
import salt.key
import salt.utils.event
from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_registry
import outpost_webhook

log = logging.getLogger(__name__)

__virtualname__ = "outpost_release"

DEFAULT_APP = {"canary": 1, "batch": "50%", "soak": 0, "max_failures": 0, "state_timeout": 300}
STATE_TIMEOUT = 300


def __virtual__():
    return __virtualname__


# -- configuration and plumbing -----------------------------------------------------------------


def _config():
    return __opts__.get("outpost") or {}


def _registry():
    return outpost_registry.Registry.from_opts(__opts__)


def _app_config(app):
    apps = _config().get("apps") or {}
    if app not in apps:
        raise SaltInvocationError(f"manifest.app: {app} is not an app outpost knows")
    return dict(DEFAULT_APP, **apps[app])


def _emit(tag, data):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        bus.fire_event(data, tag)


def _progress(rollout, phase, details=None, **counts):
    """Record the phase and tell the event bus: outpost/release/<app>/<version>/<phase>.
    ``details`` (who, why) go to the event only; the audit trail keeps them."""
    _registry().update_rollout(rollout["id"], phase, counts=counts)
    data = {"rollout": rollout["id"], "app": rollout["app"], "version": rollout["version"]}
    data.update(counts)
    data.update(details or {})
    _emit(f"outpost/release/{rollout['app']}/{rollout['version']}/{phase}", data)


def _local():
    return salt.client.get_local_client(__opts__["conf_file"])


# -- receiving ----------------------------------------------------------------------------------


def receive(body, headers, run=True):
    """
    Check a release announcement from the webhook and start its rollout.

    A refused request publishes no job: it leaves an ``outpost/security/release-refused`` event
    saying why, and returns the reason.

    body
        The raw request body, as the hook event carries it.

    headers
        The request headers.

    run
        Roll the release out now (or queue it behind a running rollout). Default: ``True``

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.receive body='{...}' headers='{...}'
    """
    releases = _config().get("releases") or {}
    try:
        announced = outpost_webhook.verify_announcement(
            body,
            headers,
            secret=(_config().get("webhook") or {}).get("secret"),
            public_keys=releases.get("signing_keys"),
            allowlist=releases.get("allowlist"),
        )
        manifest = announced["manifest"]
        _app_config(manifest["app"])
        _registry().register_release(
            manifest["app"],
            manifest["version"],
            manifest["sha256"],
            announced["artifact_url"],
            manifest,
        )
    except (outpost_webhook.RefusedRelease, SaltInvocationError, CommandExecutionError) as err:
        return _refuse(str(err))

    app, version = manifest["app"], manifest["version"]
    rollout_id, status = _registry().claim_rollout(app, version)
    log.info("release %s %s accepted; rollout %s is %s", app, version, rollout_id, status)
    _emit(f"outpost/release/{app}/{version}/{status}", {"rollout": rollout_id})
    if run and status == "running":
        return rollout(rollout_id)
    return {"accepted": True, "rollout": rollout_id, "status": status}


def _refuse(reason):
    log.warning("refused a release announcement: %s", reason)
    _emit("outpost/security/release-refused", {"reason": reason, "time": time.time()})
    return {"accepted": False, "reason": reason}


# -- rolling out --------------------------------------------------------------------------------


def rollout(rollout_id):
    """
    Run a claimed rollout through the ``orch.rollout`` orchestration, then any that queued up
    behind it for the same app.

    rollout_id
        The rollout, as ``receive`` claimed it.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.rollout 7
    """
    registry = _registry()
    results = []
    current = registry.rollout(int(rollout_id))
    while current:
        __salt__["state.orchestrate"](
            "orch.rollout", pillar={"outpost_rollout": {"id": current["id"]}}
        )
        finished = registry.rollout(current["id"])
        if finished["status"] == "running":
            # The orchestration died before its last step: nothing may stay half done.
            halt(current["id"], reason="the orchestration stopped before it finished")
            finished = registry.rollout(current["id"])
        results.append(_summary(finished))
        queued = registry.promote_queued(current["app"])
        current = registry.rollout(queued["id"]) if queued else None
    return results[0] if len(results) == 1 else results


def _summary(rollout_):
    keys = ("id", "app", "version", "status", "phase", "reason", "counts")
    return {key: rollout_[key] for key in keys}


def plan_rollout(rollout_id):
    """
    The batches of a rollout: the canary ring, then the rest; offline clients are left to catch
    up when they reconnect. Used by the ``orch.rollout`` orchestration.

    rollout_id
        The rollout.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.plan_rollout 7
    """
    rollout_ = _registry().rollout(int(rollout_id))
    settings = _app_config(rollout_["app"])
    clients = _clients(settings["clients"])
    online = sorted(_online(clients))
    offline = sorted(set(clients) - set(online))

    canary = online[: _size(settings["canary"], len(online))]
    rest = online[len(canary) :]
    step = _size(settings["batch"], len(rest)) if rest else 1
    batches = [canary] + [rest[i : i + step] for i in range(0, len(rest), step)]
    plan = {
        "id": rollout_["id"],
        "app": rollout_["app"],
        "version": rollout_["version"],
        "batches": [batch for batch in batches if batch],
        "offline": offline,
        "soak": float(settings["soak"]),
        "max_failures": int(settings["max_failures"]),
        "state_timeout": int(settings["state_timeout"]),
    }
    _progress(rollout_, "planned", total=len(clients), online=len(online), offline=len(offline))
    return plan


def _clients(configured):
    if isinstance(configured, str):
        accepted = salt.key.get_key(__opts__).list_status("accepted").get("minions", [])
        return sorted(fnmatch.filter(accepted, configured))
    return sorted(str(client) for client in configured)


def _online(clients):
    if not clients:
        return []
    answered = _local().cmd(clients, "test.ping", tgt_type="list", timeout=5)
    return [client for client in clients if answered.get(client) is True]


def _size(spec, total):
    """A count, or a percent of ``total``; at least one client."""
    text = str(spec).strip()
    if text.endswith("%"):
        return max(1, math.ceil(total * float(text[:-1]) / 100))
    return max(1, int(text))


def promote(rollout_id, batch, clients):
    """
    Point one batch of clients at the rollout's release in the registry, so their pillar names
    it. Used by the ``orch.rollout`` orchestration before it applies the batch.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.promote 7 0 '[client-1]'
    """
    rollout_ = _registry().rollout(int(rollout_id))
    _registry().set_desired(
        rollout_["app"], clients, rollout_["version"], rollout_["id"], "promote"
    )
    phase = "canary" if int(batch) == 0 else f"batch-{batch}"
    _progress(rollout_, phase, batch=int(batch), clients=len(clients), details={"names": clients})
    return {"promoted": clients}


def gate(rollout_id, batch, clients, soak=0, max_failures=0):
    """
    The health gate after a batch: every client must answer healthy on the rollout's version,
    for ``soak`` seconds. A client that does not answer counts as failed.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.gate 7 0 '[client-1]' soak=30
    """
    rollout_ = _registry().rollout(int(rollout_id))
    deadline = time.monotonic() + float(soak)
    while True:
        failed = _unhealthy(rollout_, clients)
        if len(failed) > int(max_failures) or time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    counts = {"batch": int(batch), "healthy": len(clients) - len(failed), "failed": len(failed)}
    _progress(rollout_, "gate", **counts)
    if len(failed) > int(max_failures):
        reason = f"health gate of batch {batch} failed on {', '.join(sorted(failed))}"
        _registry().update_rollout(rollout_["id"], "gate", reason=reason)
        raise CommandExecutionError(reason)
    return counts


def _unhealthy(rollout_, clients):
    answers = _local().cmd(
        clients, "shiv_app.check_health", [rollout_["app"]], tgt_type="list", timeout=30
    )
    failed = {}
    for client in clients:
        answer = answers.get(client)
        if not isinstance(answer, dict):
            failed[client] = "did not answer"
        elif not answer.get("healthy") or answer.get("version") != rollout_["version"]:
            failed[client] = answer.get("reason", "unhealthy")
    return failed


def halt(rollout_id, reason=None):
    """
    Stop a rollout and put every client it moved back on its previous release; clients that had
    none lose the app again. No download is needed: previous releases stay on the clients.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.halt 7 reason="canary unhealthy"
    """
    registry = _registry()
    rollout_ = registry.rollout(int(rollout_id))
    moved = registry.moved_in_rollout(rollout_["id"])
    reason = reason or rollout_["reason"] or _why_not_live(rollout_, sorted(moved))
    back = {client: previous for client, previous in moved.items() if previous}
    fresh = sorted(client for client, previous in moved.items() if not previous)

    for previous in set(back.values()):
        clients = sorted(client for client, version in back.items() if version == previous)
        registry.set_desired(rollout_["app"], clients, previous, rollout_["id"], "rollback", reason)
    if fresh:
        registry.forget_desired(rollout_["app"], fresh, rollout_["id"], reason)
    converged = _converge(rollout_["app"], sorted(back), fresh)

    registry.update_rollout(rollout_["id"], "halted", status="halted", reason=reason)
    _progress(
        rollout_,
        "halted",
        rolled_back=len(moved),
        failed_to_converge=len(converged),
        details={"reason": reason, "clients_moved": sorted(moved)},
    )
    log.warning(
        "rollout %s of %s %s halted: %s",
        rollout_["id"],
        rollout_["app"],
        rollout_["version"],
        reason,
    )
    return {"halted": rollout_["id"], "reason": reason, "rolled_back": sorted(moved)}


def _why_not_live(rollout_, clients):
    """The state run of a batch failed: name the clients that did not go live."""
    answers = _local().cmd(
        clients, "shiv_app.show_current", [rollout_["app"]], tgt_type="list", timeout=30
    )
    behind = [
        client
        for client in clients
        if not isinstance(answers.get(client), dict)
        or answers[client].get("version") != rollout_["version"]
    ]
    who = ", ".join(behind) or "no client"
    return f"{rollout_['phase']}: {who} did not go live on {rollout_['version']}"


def _converge(app, back, fresh):
    """Apply the previous releases; returns the clients that did not converge."""
    failed = []
    if back:
        results = _local().cmd(
            back,
            "state.apply",
            ["outpost.apps"],
            tgt_type="list",
            timeout=STATE_TIMEOUT,
            kwarg={"queue": True},
        )
        failed += [client for client in back if not _state_ok(results.get(client))]
    if fresh:
        _local().cmd(fresh, "shiv_app.remove_app", [app], tgt_type="list", timeout=STATE_TIMEOUT)
    return failed


def _state_ok(result):
    return isinstance(result, dict) and all(
        isinstance(item, dict) and item.get("result") for item in result.values()
    )


def finish(rollout_id, offline=None):
    """
    Close a rollout that passed every gate. Offline clients get the release as their desired one,
    so they converge when they reconnect.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.finish 7
    """
    registry = _registry()
    rollout_ = registry.rollout(int(rollout_id))
    offline = list(offline or [])
    if offline:
        registry.set_desired(
            rollout_["app"],
            offline,
            rollout_["version"],
            rollout_["id"],
            "pending",
            "offline during the rollout",
        )
    registry.update_rollout(rollout_["id"], "succeeded", status="succeeded")
    _progress(rollout_, "succeeded", pending=len(offline))
    log.info("rollout %s of %s %s succeeded", rollout_["id"], rollout_["app"], rollout_["version"])
    return {"succeeded": rollout_["id"], "pending": offline}


# -- reading ------------------------------------------------------------------------------------


def status(app=None, limit=10):
    """
    Show rollouts and where each client stands, as a table.

    app
        Only this app. Default: every app

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.status hello
    """
    registry = _registry()
    rows = [("rollout", "app", "version", "status", "phase", "counts", "reason")]
    for item in registry.rollouts(app, limit=int(limit)):
        counts = " ".join(f"{key}={value}" for key, value in sorted(item["counts"].items()))
        rows.append(
            (
                item["id"],
                item["app"],
                item["version"],
                item["status"],
                item["phase"],
                counts,
                item["reason"] or "",
            )
        )
    lines = _table(rows)
    for name in sorted({item[1] for item in rows[1:]}):
        desired = registry.desired(name)
        clients = [("client", "desired release")] + sorted(desired.items())
        lines += ["", f"{name}:"] + _table(clients)
    return "\n".join(lines)


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def rollouts(app=None, limit=20):
    """
    The newest rollouts, newest first, with their status, phase and counts.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.rollouts hello
    """
    return _registry().rollouts(app, limit=int(limit))


def history(app=None, client=None, rollout_id=None):
    """
    The registry's history: registrations, promotions, rollbacks, pending clients.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.history app=hello client=client-2
    """
    return _registry().history(app=app, client=client, rollout_id=rollout_id)
