"""
Keep Shiv-packaged web apps installed, live and healthy on a client.

.. code-block:: yaml

    hello:
      shiv_app.installed:
        - version: 1.1.0
        - source: salt://releases/hello/hello-1.1.0.pyz
        - source_hash: sha256=3b0c...
        - python: C:\\outpost\\python\\3.11.9\\python.exe
        - port: 8080
        - env:
            LOG_LEVEL: info
        - keep: 3

A release that fails its health gate leaves the previous release live and healthy, and the state
fails saying why. A second run changes nothing, downloads nothing and restarts nothing.
"""

from salt.exceptions import SaltException

__virtualname__ = "shiv_app"


def __virtual__():
    if "shiv_app.plan_release" in __salt__:
        return __virtualname__
    return (False, "shiv_app state: the shiv_app execution module is not loaded")


def _ret(name, comment):
    return {"name": name, "changes": {}, "result": True, "comment": comment}


def _describe(plan, version, future):
    """One sentence per change, in the tense the caller asks for."""
    words = {
        "installed": ("would install", "installed"),
        "version": ("would switch to", "switched to"),
        "settings": ("would change settings of", "changed settings of"),
        "service": ("would start", "started"),
        "pruned": ("would prune old releases of", "pruned old releases of"),
    }
    index = 0 if future else 1
    return "; ".join(f"{words[key][index]} {version}" for key in words if key in plan)


def installed(
    name,
    version,
    source,
    source_hash,
    python=None,
    port=None,
    args=None,
    env=None,
    health_url=None,
    health_expect=None,
    health_timeout=30,
    keep=3,
    user=None,
):
    """
    Make ``version`` of app ``name`` the live release, installed from ``source``.

    name
        The app name.

    version
        The release that should be live.

    source
        ``salt://`` path, ``https://`` URL or local path of the ``.pyz``; only read when the release
        is not installed yet.

    source_hash
        The sha256 of the ``.pyz``; checked before anything moves.

    python
        Absolute path of the app's pinned interpreter (never Salt's own).

    port
        The TCP port the app binds on 127.0.0.1.

    args
        Extra arguments after the ``.pyz``; ``{port}`` is replaced by the port.

    env
        Environment variables of the app. Their values never appear in the state's return.

    health_url, health_expect, health_timeout
        The health gate: URL (default ``http://127.0.0.1:{port}/healthz``), the version it must
        report (default ``version``) and the seconds a new release has (default 30).

    keep
        Releases to keep; the current and previous are always kept. Default: ``3``

    user
        The service account. Default: the service manager's default.
    """
    ret = _ret(name, f"{name} {version} is live and already as requested")
    settings = {
        "python": python,
        "port": port,
        "args": args,
        "env": env,
        "health_url": health_url,
        "health_expect": health_expect,
        "user": user,
    }
    try:
        plan = __salt__["shiv_app.plan_release"](
            name,
            version,
            source_hash,
            keep=keep,
            health_timeout=health_timeout,
            complete=True,
            **settings,
        )
        if not plan:
            return ret
        if __opts__["test"]:
            ret.update(
                result=None, changes=plan, comment=f"{name}: {_describe(plan, version, True)}"
            )
            return ret

        if "installed" in plan:
            __salt__["shiv_app.install_release"](name, version, source, source_hash)
            ret["changes"]["installed"] = version
        if "version" in plan or "settings" in plan:
            __salt__["shiv_app.activate_release"](
                name, version, health_timeout=health_timeout, complete=True, **settings
            )
            ret["changes"].update(
                {key: plan[key] for key in ("version", "settings") if key in plan}
            )
        elif "service" in plan:
            __salt__["shiv_app.restart_app"](name, health_timeout=health_timeout)
            ret["changes"]["service"] = plan["service"]
        pruned = __salt__["shiv_app.prune_releases"](name, keep=keep)
        if pruned:
            ret["changes"]["pruned"] = pruned

        _verify_live(name, version)
    except SaltException as err:
        said = str(err)
        prefix = f"{name} {version}"
        ret.update(result=False, comment=said if said.startswith(prefix) else f"{prefix}: {said}")
        return ret

    ret["comment"] = f"{name}: {_describe(ret['changes'], version, False)}"
    return ret


def _verify_live(name, version):
    current = __salt__["shiv_app.show_current"](name)
    if not current or current["version"] != version:
        raise SaltException(
            f"after the change the live release is {current and current['version']}"
        )


def rolled_back(name, version=None, health_timeout=30):
    """
    Make an installed earlier release live again, with no download.

    Without ``version`` the previous release is the target: use that form in orchestrations and
    ``onfail`` requisites, since every run of it moves one release back.

    name
        The app name.

    version
        The installed release that should be live. Default: the previous release

    health_timeout
        Seconds the release has to become healthy. Default: ``30``
    """
    ret = _ret(name, f"{name} {version or 'previous release'} is already live")
    try:
        releases = __salt__["shiv_app.list_releases"](name)
        current = next((r["version"] for r in releases if r["current"]), None)
        target = version or _previous(releases)
        ret["comment"] = f"{name} {target} is already live"
        if target == current:
            return ret
        if target not in {release["version"] for release in releases}:
            raise SaltException(
                f"version: {target} is not installed, so it cannot be rolled back to"
            )
        change = {"version": {"old": current, "new": target}}
        if __opts__["test"]:
            ret.update(result=None, changes=change, comment=f"{name}: would roll back to {target}")
            return ret

        __salt__["shiv_app.rollback_release"](name, target, health_timeout=health_timeout)
        _verify_live(name, target)
    except SaltException as err:
        ret.update(result=False, comment=f"{name}: {err}")
        return ret

    ret.update(changes=change, comment=f"{name}: rolled back to {target}")
    return ret


def _previous(releases):
    for release in releases:
        if release["previous"]:
            return release["version"]
    raise SaltException("version: there is no previous release to roll back to")


def absent(name):
    """
    Make sure app ``name`` has no service and no releases on this client. Its journal stays.

    name
        The app name.
    """
    ret = _ret(name, f"{name} is already absent")
    try:
        releases = __salt__["shiv_app.list_releases"](name)
        status = __salt__["shiv_app.get_status"](name)
        if not releases and status["service"] == "ABSENT":
            return ret
        change = {"removed": [release["version"] for release in releases]}
        if __opts__["test"]:
            ret.update(result=None, changes=change, comment=f"{name} would be removed")
            return ret

        __salt__["shiv_app.remove_app"](name)
        if __salt__["shiv_app.list_releases"](name):
            raise SaltException("releases are still there after removal")
    except SaltException as err:
        ret.update(result=False, comment=f"{name}: {err}")
        return ret

    ret.update(changes=change, comment=f"{name} was removed")
    return ret


def mod_watch(name, sfun=None, health_timeout=30, **kwargs):
    """
    Restart the live release when a watched state changed, then gate on health.

    .. code-block:: yaml

        hello:
          shiv_app.installed:
            - version: 1.1.0
            # ...
            - watch:
              - file: hello-settings
    """
    ret = _ret(name, f"{name} restarted")
    if sfun != "installed":
        ret.update(result=False, comment=f"shiv_app.{sfun} cannot be watched")
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"restarted": name}, comment=f"{name} would be restarted")
        return ret
    try:
        result = __salt__["shiv_app.restart_app"](name, health_timeout=health_timeout)
    except SaltException as err:
        ret.update(result=False, comment=f"{name}: {err}")
        return ret
    ret["changes"] = {"restarted": result["restarted"]}
    return ret
