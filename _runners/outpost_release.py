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
          ping_timeout: 15   # seconds the plan waits for clients to answer; the rest are offline

Several masters (Salt's multi-master, every master hot) share one PostgreSQL registry. The same
announcement heard by two masters is acted on once (claimed in the registry), and the master that
starts a rollout holds its lease, renewed by ``resume`` on its own Salt scheduler. When a master
is lost between two batches its lease runs out, and another master's ``resume`` takes the rollout
over: it carries on from the first batch that had not passed its health gate, or halts it, as
``outpost:masters:takeover`` says::

    outpost:
      masters:
        lease: 120          # seconds a master holds a rollout without renewing it
        takeover: resume    # or halt
    schedule:
      outpost-rollouts: {function: outpost_release.resume, seconds: 30}

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
from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_events
import outpost_ids
import outpost_registry
import outpost_webhook

log = logging.getLogger(__name__)

__virtualname__ = "outpost_release"

DEFAULT_MASTERS = {"lease": 120, "takeover": "resume"}
# An announcement is only accepted within 5 minutes of its timestamp: its claim outlives that.
ANNOUNCEMENT_CLAIM_SECONDS = 900
# A batch's progress event is sent once; a rollout taken over weeks later is not expected.
ANNOUNCED_CLAIM_SECONDS = 30 * 24 * 3600
DEFAULT_APP = {
    "canary": 1,
    "batch": "50%",
    "soak": 0,
    "max_failures": 0,
    "state_timeout": 300,
    # Seconds the plan's test.ping waits: a busy master with many clients needs more than 5.
    "ping_timeout": 15,
}
STATE_TIMEOUT = 300


def __virtual__():
    return __virtualname__


# -- configuration and plumbing -----------------------------------------------------------------


def _config():
    return __opts__.get("outpost") or {}


def _registry():
    return outpost_registry.Registry.from_opts(__opts__)


def _masters():
    settings = dict(DEFAULT_MASTERS, **(_config().get("masters") or {}))
    if settings["takeover"] not in ("resume", "halt"):
        raise SaltInvocationError(
            f"outpost:masters:takeover: {settings['takeover']!r} is not resume or halt"
        )
    return settings


def _me():
    """This master, as the registry names the owner of a rollout."""
    return str(__opts__["id"])


def _lease():
    return float(_masters()["lease"])


def _require_ownership(rollout_id):
    """A master that lost a rollout to another (its lease ran out) must not touch it again."""
    lease = _registry().lease(int(rollout_id))
    if lease and lease["owner"] != _me():
        raise CommandExecutionError(
            f"rollout_id: rollout {rollout_id} is now run by {lease['owner']}, not {_me()}"
        )


def _app_config(app):
    apps = _config().get("apps") or {}
    if app not in apps:
        raise SaltInvocationError(f"manifest.app: {app} is not an app outpost knows")
    return dict(DEFAULT_APP, **apps[app])


def _emit(tag, data):
    outpost_events.fire(__opts__, tag, data)


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
    key = outpost_webhook.announcement_key(body, headers)
    if not _registry().claim(key, _me(), ANNOUNCEMENT_CLAIM_SECONDS):
        owner = _registry().claim_owner(key)
        log.info("release %s %s: this announcement is already taken by %s", app, version, owner)
        return {"accepted": True, "duplicate": True, "taken_by": owner}
    try:
        rollout_id, status = _registry().claim_rollout(app, version, owner=_me(), lease=_lease())
    except outpost_registry.StaleRelease as err:
        return _refuse(str(err))
    log.info("release %s %s accepted; rollout %s is %s", app, version, rollout_id, status)
    if status == "duplicate":
        return {"accepted": True, "rollout": rollout_id, "status": status}
    _emit(f"outpost/release/{app}/{version}/{status}", {"rollout": rollout_id})
    if run and status == "running":
        return rollout(rollout_id)
    return {"accepted": True, "rollout": rollout_id, "status": status}


def _refuse(reason):
    log.warning("refused a release announcement: %s", reason)
    _emit("outpost/security/release-refused", {"reason": reason, "time": time.time()})
    return {"accepted": False, "reason": reason}


# A client's start reaches every master within moments of each other: one of them converges it.
CONVERGE_CLAIM_SECONDS = 30


def converge(client, tag=None):
    """
    Converge a client that (re)connected to the releases the registry names for it: a
    ``state.apply outpost.apps`` job, queued behind any running one. The
    ``salt/minion/<id>/start`` reactor calls this on every master; the first to claim the start
    in the registry runs it.

    client
        The minion id: one plain id, never a target expression.

    tag
        The start event's tag, which the reactor passes on; a tag naming another minion than
        ``client`` is ignored. Default: None

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.converge client-2
    """
    outpost_ids.check_minion_id(client)
    if tag is not None and str(tag) != f"salt/minion/{client}/start":
        # A minion may fire any salt/minion/<id>/start with any data: act on its own id only.
        log.warning("ignored a start event %s naming another client, %r", tag, client)
        return {"ignored": f"{tag} does not name {client!r}"}
    key = f"converge:{client}"
    if not _registry().claim(key, _me(), CONVERGE_CLAIM_SECONDS):
        log.debug("%s's start is converged by %s", client, _registry().claim_owner(key))
        return {"converged_by": _registry().claim_owner(key)}
    jid = _local().cmd_async(
        [client], "state.apply", ["outpost.apps"], tgt_type="list", kwarg={"queue": True}
    )
    log.info("converging %s after its start: job %s", client, jid)
    return {"converged_by": _me(), "jid": jid}


# -- rolling out --------------------------------------------------------------------------------


def rollout(rollout_id, resume_claim=None):
    """
    Run a claimed rollout through the ``orch.rollout`` orchestration, then any that queued up
    behind it for the same app.

    rollout_id
        The rollout, as ``receive`` claimed it.

    resume_claim
        Set by ``resume`` (through the ``outpost/rollout/<id>/resume`` reactor) when this master
        took the rollout over; without its claim in the registry nothing is resumed. Default: None

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.rollout 7
    """
    registry = _registry()
    if resume_claim is not None and not registry.consume_claim(resume_claim, _me()):
        log.warning(
            "rollout %s: no resume claim %s for %s; ignored", rollout_id, resume_claim, _me()
        )
        return {"ignored": f"rollout {rollout_id} is not being resumed by {_me()}"}
    results = []
    current = registry.rollout(int(rollout_id))
    while current:
        __salt__["state.orchestrate"](
            "orch.rollout", pillar={"outpost_rollout": {"id": current["id"]}}
        )
        finished = registry.rollout(current["id"])
        if finished["status"] == "running" and not registry.owns(current["id"], _me()):
            # Another master took it over while this one was away: it is theirs now.
            results.append(dict(_summary(finished), handed_over=True))
            break
        if finished["status"] == "running":
            # The orchestration died before its last step: nothing may stay half done.
            halt(current["id"], reason="the orchestration stopped before it finished")
            finished = registry.rollout(current["id"])
        results.append(_summary(finished))
        queued = registry.promote_queued(current["app"], owner=_me(), lease=_lease())
        current = registry.rollout(queued["id"]) if queued else None
    return results[0] if len(results) == 1 else results


def resume():
    """
    Keep this master's rollouts and take over those of a master that is gone; every master runs
    this on its own Salt scheduler. A running rollout whose owner's lease ran out becomes this
    master's (one transaction, so exactly one master takes it), which carries on from the first
    batch that had not passed its health gate, or halts it (``outpost:masters:takeover``). A
    queued rollout left with nothing running ahead of it starts.

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.resume
    """
    registry = _registry()
    settings = _masters()
    kept = registry.renew_leases(_me(), _lease())
    taken = registry.take_over(_me(), _lease())
    for item in taken:
        reason = f"{_me()} took over from {item['from'] or 'no master'}: its lease ran out"
        log.warning("rollout %s of %s %s: %s", item["id"], item["app"], item["version"], reason)
        _emit(
            f"outpost/release/{item['app']}/{item['version']}/takeover",
            {
                "rollout": item["id"],
                "master": _me(),
                "from": item["from"],
                "mode": settings["takeover"],
            },
        )
        if settings["takeover"] == "halt":
            halt(item["id"], reason=f"{reason}; outpost:masters:takeover is halt")
        else:
            _start_here(registry, item["id"])
    for app in registry.apps_with_orphaned_queue():
        queued = registry.promote_queued(app, owner=_me(), lease=_lease())
        if queued:
            taken.append({"id": queued["id"], "app": app, "version": queued["version"]})
            _start_here(registry, queued["id"])
    return {"master": _me(), "kept": kept, "taken": [item["id"] for item in taken]}


def _start_here(registry, rollout_id):
    """Hand the rollout to this master's reactor (``outpost/rollout/<id>/resume``), so it runs in
    this master's own process tree and stops with it; the claim keeps a forged event idle."""
    claim = f"resume:{rollout_id}:{time.time():.6f}"
    registry.claim(claim, _me(), _lease())
    _emit(f"outpost/rollout/{rollout_id}/resume", {"rollout": rollout_id, "claim": claim})


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
    registry = _registry()
    rollout_ = registry.rollout(int(rollout_id))
    lease = registry.lease(rollout_["id"])
    if lease and lease["plan"]:
        plan = dict(lease["plan"], start=lease["batches_done"])
        _progress(rollout_, "resumed", start=plan["start"], details={"master": _me()})
        return plan

    settings = _app_config(rollout_["app"])
    clients = _clients(settings["clients"])
    online = sorted(_online(clients, float(settings["ping_timeout"])))
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
    plan = dict(registry.save_plan(rollout_["id"], plan), start=0)
    _progress(rollout_, "planned", total=len(clients), online=len(online), offline=len(offline))
    return plan


def _clients(configured):
    if isinstance(configured, str):
        accepted = salt.key.get_key(__opts__).list_status("accepted").get("minions", [])
        return sorted(fnmatch.filter(accepted, configured))
    return sorted(str(client) for client in configured)


def _online(clients, timeout):
    if not clients:
        return []
    answered = _local().cmd(clients, "test.ping", tgt_type="list", timeout=timeout)
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
    _require_ownership(rollout_id)
    rollout_ = _registry().rollout(int(rollout_id))
    # A master that takes over may promote a batch its predecessor had promoted already.
    moved = _registry().set_desired(
        rollout_["app"], clients, rollout_["version"], rollout_["id"], "promote", only_changed=True
    )
    phase = "canary" if int(batch) == 0 else f"batch-{batch}"
    # The predecessor may have stopped between its promote and its announcement: a batch is
    # announced by the first master to claim it. (One that stops between the claim and the
    # event, milliseconds, still leaves it unannounced.)
    key = f"announced:{rollout_['id']}:{phase}"
    if _registry().claim(key, _me(), ANNOUNCED_CLAIM_SECONDS):
        counts = {"batch": int(batch), "clients": len(clients)}
        _progress(rollout_, phase, details={"names": clients}, **counts)
    if not moved:
        return {"promoted": [], "already": clients}
    return {"promoted": clients}


def gate(rollout_id, batch, clients, soak=0, max_failures=0, state_gated=False):
    """
    The health gate after a batch: every client must answer healthy on the rollout's version,
    for ``soak`` seconds. A client that does not answer counts as failed.

    state_gated
        The batch's state run has just passed, and it fails a client unless the rollout's version
        answers healthy (``shiv_app.installed`` gates on ``/healthz``). With no soak and no
        failure allowed (so every client passed) nothing is left to check, and no client is asked
        again. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt-run outpost_release.gate 7 0 '[client-1]' soak=30
    """
    _require_ownership(rollout_id)
    rollout_ = _registry().rollout(int(rollout_id))
    soak, max_failures = float(soak), int(max_failures)
    trusted = state_gated and soak == 0 and max_failures == 0
    failed = {} if trusted else _held_healthy(rollout_, clients, soak, max_failures)

    counts = {"batch": int(batch), "healthy": len(clients) - len(failed), "failed": len(failed)}
    checked_by = "state run" if trusted else "shiv_app.check_health"
    _progress(rollout_, "gate", details={"checked_by": checked_by}, **counts)
    if len(failed) > max_failures:
        reason = f"health gate of batch {batch} failed on {', '.join(sorted(failed))}"
        _registry().update_rollout(rollout_["id"], "gate", reason=reason)
        raise CommandExecutionError(reason)
    _registry().batch_passed(rollout_["id"], int(batch))
    return counts


def _held_healthy(rollout_, clients, soak, max_failures):
    """Ask the clients until the soak ends or too many failed; returns the failed ones."""
    deadline = time.monotonic() + soak
    while True:
        failed = _unhealthy(rollout_, clients)
        if len(failed) > max_failures or time.monotonic() >= deadline:
            return failed
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


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
    if not registry.owns(rollout_["id"], _me()) or rollout_["status"] != "running":
        # Another master runs it now, or it ended: halting is theirs, or done.
        log.info("rollout %s: not halted by %s (%s)", rollout_id, _me(), rollout_["status"])
        return {"halted": None, "reason": f"rollout {rollout_id} is not {_me()}'s to halt"}
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
    _require_ownership(rollout_id)
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
