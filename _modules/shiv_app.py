"""
Install, switch, health-check and roll back releases of Shiv-packaged web apps.

Each app lives under the outpost root (minion config or pillar ``outpost:root``; default
``C:\\outpost`` on Windows and ``/opt/outpost`` elsewhere) in versioned release folders, runs as
the service ``outpost-<app>`` on a pinned Python, and keeps a journal of everything done to it.
See ``_utils/outpost_release.py`` for the layout.

Minion configuration (or pillar)::

    outpost:
      root: /opt/outpost
      supervisor:                      # Linux service backend
        conf_file: /etc/supervisor/supervisord.conf
        include_dir: /etc/supervisor/conf.d
      windows:                         # Windows service backend
        service_dir: C:\\outpost\\services
        winsw_path: C:\\outpost\\bin\\winsw.exe
"""

import logging
import os
import re
import shutil
import sys
import urllib.parse

import salt.utils.platform
from salt.exceptions import SaltInvocationError

# Synced _utils are importable by their bare name while Salt's loader loads this module.
import outpost_health
import outpost_release
import outpost_service

log = logging.getLogger(__name__)

__virtualname__ = "shiv_app"

DEFAULT_HEALTH_PATH = "/healthz"
SETTING_FIELDS = ("python", "port", "args", "env", "health_url", "health_expect", "user")


def __virtual__():
    return __virtualname__


# -- configuration ------------------------------------------------------------------------------


def _config(key, default=None):
    return __salt__["config.get"](f"outpost:{key}", default)


def _root():
    default = r"C:\outpost" if salt.utils.platform.is_windows() else "/opt/outpost"
    return _config("root", default)


def _max_path():
    """Windows refuses paths over MAX_PATH unless long paths are enabled machine-wide."""
    default = outpost_release.WINDOWS_MAX_PATH if salt.utils.platform.is_windows() else None
    return _config("max_path", default)


def _releases(name):
    return outpost_release.AppReleases(_root(), name)


def _backend():
    return outpost_service.backend_for(__salt__, _config_get)


def _config_get(key, default=None):
    return __salt__["config.get"](key, default)


def _service_name(name):
    return f"outpost-{name}"


# -- settings -----------------------------------------------------------------------------------


def _validate_python(python):
    """The app runs on its own pinned interpreter, never on the one Salt runs on."""
    if not python or not os.path.isabs(str(python)):
        raise SaltInvocationError(f"python: {python!r} must be the absolute path of an interpreter")
    if not os.path.isfile(python):
        raise SaltInvocationError(f"python: {python} does not exist on this minion")
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        raise SaltInvocationError(
            f"python: {python} is Salt's own interpreter; pin a separate Python for the app"
        )
    return str(python)


def _validate_port(port):
    try:
        number = int(port)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= 65535:
        raise SaltInvocationError(f"port: {port!r} is not a TCP port number")
    return number


def _validate_env(env):
    env = env or {}
    if not isinstance(env, dict):
        raise SaltInvocationError("env: expected a mapping of variable names to values")
    for key, value in env.items():
        if not isinstance(key, str) or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise SaltInvocationError(f"env: {key!r} is not a valid environment variable name")
        if isinstance(value, (dict, list)):
            raise SaltInvocationError(f"env: {key}: {_not_a_value(value)}")
    values = {key: str(value) for key, value in env.items()}
    for key, value in values.items():
        _refuse_line_breaks(value, f"env: the value of {key}")
    return values


def _not_a_value(value):
    """Why an environment value is not a string: mostly a secret the master could not give."""
    if isinstance(value, dict) and "vault_error" in value:
        return str(value["vault_error"])
    if isinstance(value, dict) and "vault" in value:
        return (
            "a secret reference the master did not resolve; add outpost_vault to the master's "
            "ext_pillar"
        )
    return "expected a string, not a mapping or list"


def _refuse_line_breaks(value, what):
    """Service definitions are line-based files: a line break would start a new setting."""
    if any(char in value for char in "\r\n\x00"):
        raise SaltInvocationError(
            f"{what} contains a line break or NUL, which a service cannot take"
        )


def _validate_args(args):
    args = args or []
    if isinstance(args, str) or not isinstance(args, list):
        raise SaltInvocationError("args: expected a list of arguments, one per item")
    args = [str(arg) for arg in args]
    for index, arg in enumerate(args):
        _refuse_line_breaks(arg, f"args: item {index}")
    return args


def _merge_settings(saved, complete=False, **given):
    """Settings given now win over saved ones; every field is checked before use.

    ``complete`` says the caller gave every setting it wants (a state does): a field left out
    then goes back to its default instead of keeping what was saved.
    """
    settings = {} if complete else dict(saved or {})
    settings.update({key: value for key, value in given.items() if value is not None})
    if "python" not in settings:
        raise SaltInvocationError("python: required the first time an app is activated")
    if "port" not in settings:
        raise SaltInvocationError("port: required the first time an app is activated")
    settings["python"] = _validate_python(settings["python"])
    settings["port"] = _validate_port(settings["port"])
    settings["args"] = _validate_args(settings.get("args"))
    settings["env"] = _validate_env(settings.get("env"))
    _validate_health_url(settings.get("health_url"))
    return settings


def _validate_health_url(url):
    if url and urllib.parse.urlparse(str(url)).scheme not in ("http", "https"):
        raise SaltInvocationError(f"health_url: {url} is not an http:// or https:// URL")


def _validate_timeout(health_timeout):
    return _validate_seconds(health_timeout, "health_timeout")


def _validate_seconds(value, field, allow_zero=False):
    # float() would also take "1_0", " 1 " and other scripts' digits.
    text = isinstance(value, str) and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value)
    try:
        seconds = -1.0 if isinstance(value, bool) or text else float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    lowest_allowed = seconds >= 0 if allow_zero else seconds > 0
    if not lowest_allowed or seconds > 3600:
        lowest = "from 0" if allow_zero else "more than 0"
        raise SaltInvocationError(f"{field}: {value!r} must be seconds, {lowest} and at most 3600")
    return seconds


def _whole_number(value, field, low, high):
    """An int, a whole float (3.0 from YAML) or digits as text; never a bool, never rounded."""
    whole_float = isinstance(value, float) and value.is_integer()
    digits = isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip())
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif whole_float or digits:
        number = int(value)
    if number is None or not low <= number <= high:
        raise SaltInvocationError(f"{field}: {value!r} is not a whole number from {low} to {high}")
    return number


def _validate_retries(retries):
    return _whole_number(retries, "retries", 1, 100)


def _validate_keep(keep):
    return _whole_number(keep, "keep", 1, 1000)


def _health_url(settings):
    url = settings.get("health_url") or f"http://127.0.0.1:{{port}}{DEFAULT_HEALTH_PATH}"
    return url.replace("{port}", str(settings["port"]))


def _service_spec(releases, version, settings):
    port = str(settings["port"])
    env = dict(settings["env"])
    env.update(PORT=port, SHIV_ROOT=releases.shiv_root(version))
    return outpost_service.ServiceSpec(
        name=_service_name(releases.app),
        display_name=f"outpost {releases.app}",
        command=[settings["python"], releases.pyz_path(version)]
        + [arg.replace("{port}", port) for arg in settings["args"]],
        env=env,
        workdir=releases.release_dir(version),
        log_dir=os.path.join(releases.app_dir, "logs"),
        user=settings.get("user"),
        **_log_retention(),
    )


def _log_retention():
    """Minion config or pillar ``outpost:logs:app``: ``max_bytes`` per file, ``backups`` kept."""
    found = {}
    for key, unit, default, least in (
        ("max_bytes", "bytes", 10 * 1024 * 1024, 1),
        ("backups", "files", 5, 0),
    ):
        value = __salt__["config.get"](f"outpost:logs:app:{key}", default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SaltInvocationError(
                f"outpost:logs:app:{key}: {value!r} is not a whole number of {unit}"
            )
        found[f"log_{key}"] = value
    return found


# -- fetching -----------------------------------------------------------------------------------


def fetch_release(name, version, source, source_hash):
    """
    Download a release's ``.pyz`` into the app's staging folder and check its sha256.

    Nothing outside staging changes; a download with the wrong hash is deleted.

    name
        The app name.

    version
        The release version, e.g. ``1.2.0``.

    source
        ``salt://`` path, ``https://`` URL, or a local absolute path.

    source_hash
        The sha256 of the ``.pyz``, as 64 hex digits or ``sha256=<hex>``.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.fetch_release hello 1.1.0 salt://releases/hello/hello-1.1.0.pyz <sha256>
    """
    releases = _releases(name)
    outpost_release.validate_version(version)
    expected = outpost_release.normalize_sha256(source_hash)
    staged = releases.stage_path(version)

    _download(source, staged)

    actual = outpost_release.sha256_of(staged)
    if actual != expected:
        os.remove(staged)
        raise outpost_release.ReleaseError(
            f"source_hash: {source} has sha256 {actual}, expected {expected}; nothing was installed"
        )
    log.debug("fetched %s %s from %s", name, version, source)
    return {"path": staged, "sha256": actual}


def _download(source, destination):
    source = str(source)
    scheme = "" if os.path.isabs(source) else urllib.parse.urlparse(source).scheme
    if scheme in ("salt", "https", "http"):
        if scheme == "http":
            raise SaltInvocationError(f"source: {source} is plain http; use https or salt://")
        fetched = __salt__["cp.get_url"](source, destination)
        if not fetched:
            raise outpost_release.ReleaseError(f"source: could not fetch {source}")
        return
    if scheme == "file":
        source = urllib.parse.urlparse(source).path
    elif scheme:
        raise SaltInvocationError(f"source: {source} is not a salt://, https:// or local path")
    if not os.path.isabs(source) or not os.path.isfile(source):
        raise SaltInvocationError(f"source: {source} is not an existing absolute path")
    shutil.copyfile(source, destination)


# -- installing ---------------------------------------------------------------------------------


def install_release(name, version, source, source_hash):
    """
    Install a release into its own folder without making it live.

    A release already installed with the same sha256 is left alone and nothing is downloaded.

    name
        The app name.

    version
        The release version.

    source
        Where to fetch the ``.pyz`` from (see ``shiv_app.fetch_release``).

    source_hash
        The expected sha256 of the ``.pyz``.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.install_release hello 1.1.0 salt://releases/hello/hello-1.1.0.pyz <sha256>
    """
    releases = _releases(name)
    outpost_release.validate_version(version)
    expected = outpost_release.normalize_sha256(source_hash)
    _check_same_content(releases, version, expected)
    if releases.is_installed(version, expected):
        return {"installed": False, "release": releases.release_info(version)}

    with releases.lock():
        staged = fetch_release(name, version, source, expected)["path"]
        info = releases.install(version, staged, expected, max_path=_max_path())
    log.info("installed %s %s (not live yet)", name, version)
    return {"installed": True, "release": info}


def activate_release(
    name,
    version,
    python=None,
    port=None,
    args=None,
    env=None,
    health_url=None,
    health_expect=None,
    health_timeout=30,
    user=None,
    complete=False,
):
    """
    Make an installed release live: switch to it, restart the service, then gate on health.

    When the release does not become healthy within ``health_timeout`` seconds, the previous
    release and settings are put back, restarted and checked, the journal records why, and the
    call fails.

    name
        The app name.

    version
        An installed release.

    python
        Absolute path of the pinned interpreter. Remembered from the last activation.

    port
        The TCP port the app binds on 127.0.0.1; given to it as ``PORT``. Remembered.

    args
        Extra arguments after the ``.pyz``; ``{port}`` is replaced by the port. Remembered.

    env
        Environment variables for the app. Remembered, in a file only the service account reads.

    health_url
        URL of the health check, ``{port}`` replaced. Default: ``http://127.0.0.1:{port}/healthz``

    health_expect
        The version the health check must report. Default: ``version``

    health_timeout
        Seconds the new release has to become healthy. Default: ``30``

    user
        The account the service runs as. Default: the service manager's default account.

    complete
        The settings given are all there are: those left out go back to their defaults instead
        of being remembered. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.activate_release hello 1.1.0 python=/usr/bin/python3.11 port=8080
    """
    releases = _releases(name)
    if not releases.is_installed(version):
        raise SaltInvocationError(f"version: {name} {version} is not installed on this minion")
    health_timeout = _validate_timeout(health_timeout)
    saved = releases.settings()
    settings = _merge_settings(
        saved,
        complete=complete,
        python=python,
        port=port,
        args=args,
        env=env,
        health_url=health_url,
        health_expect=health_expect,
        user=user,
    )
    with releases.lock():
        return _go_live(releases, version, settings, saved, health_timeout, "activate")


def _go_live(releases, version, settings, saved_settings, health_timeout, action):
    """Switch, restart and gate. On failure put back the release that was live."""
    backend = _backend()
    old_current, old_previous = releases.current(), releases.previous()
    backend.validate(_service_spec(releases, version, settings))

    backend.protect_folder(releases.app_dir, settings.get("user"))
    releases.save_settings(settings)
    releases.switch(version)
    try:
        _start(backend, releases, version, settings)
        healthy, reason = _gate(backend, releases, version, settings, health_timeout)
    except Exception as err:  # whatever broke, the old release must come back
        healthy, reason = False, f"the service did not start: {err}"
    if healthy:
        entry = releases.record(action, version, previous=old_current, result=True)
        log.info("%s %s is live (was %s)", releases.app, version, old_current)
        return {"live": version, "previous": old_current, "health": reason, "time": entry["time"]}

    releases.record("fail", version, previous=old_current, result=False, reason=reason)
    log.warning("%s %s failed its health gate: %s", releases.app, version, reason)
    restored = _restore(
        backend, releases, old_current, old_previous, saved_settings, health_timeout
    )
    raise outpost_release.HealthError(
        f"{releases.app} {version} failed its health gate: {reason}; {restored}"
    )


def _start(backend, releases, version, settings, force_restart=False):
    """Define and load the service, then make sure the new definition is what runs."""
    spec = _service_spec(releases, version, settings)
    changed = backend.define(spec)
    backend.apply(spec.name)
    if force_restart or not changed:
        backend.restart(spec.name)
    elif not backend.status(spec.name)["running"]:
        # Loading a changed definition stopped the old process; the service manager would start
        # the new one on its next tick (a second with supervisord): start it now.
        backend.start(spec.name)


def _gate(backend, releases, version, settings, health_timeout):
    service = _service_name(releases.app)

    def still_running():
        return backend.status(service)["state"] not in ("FATAL", "EXITED", "STOPPED", "ABSENT")

    healthy, reason, _ = outpost_health.wait_healthy(
        _health_url(settings),
        expect=settings.get("health_expect") or version,
        deadline_seconds=health_timeout,
        still_running=still_running,
    )
    return healthy, reason


def _restore(backend, releases, old_current, old_previous, saved_settings, health_timeout):
    """Put the previously live release back; say in words how that went."""
    if not old_current or not saved_settings:
        backend.stop(_service_name(releases.app))
        releases.restore_pointers(old_current, old_previous)
        return "no earlier release to go back to; the service is stopped"

    releases.restore_pointers(old_current, old_previous)
    releases.save_settings(saved_settings)
    _start(backend, releases, old_current, saved_settings)
    healthy, reason = _gate(backend, releases, old_current, saved_settings, health_timeout)
    releases.record(
        "rollback", old_current, automatic=True, result=healthy, reason=f"health check: {reason}"
    )
    if healthy:
        log.info("%s is back on %s", releases.app, old_current)
        return f"{old_current} is live again and healthy"
    log.error("%s %s did not come back healthy: %s", releases.app, old_current, reason)
    return f"{old_current} is live again but unhealthy: {reason}"


def rollback_release(name, version=None, health_timeout=30):
    """
    Go back to the previous release, or to a named installed one, without downloading anything.

    name
        The app name.

    version
        The release to go back to. Default: the previous release

    health_timeout
        Seconds the release has to become healthy. Default: ``30``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.rollback_release hello
        salt '*' shiv_app.rollback_release hello 1.0.0
    """
    releases = _releases(name)
    target = version or releases.previous()
    if not target:
        raise SaltInvocationError(f"version: {name} has no previous release to roll back to")
    if not releases.is_installed(target):
        raise SaltInvocationError(
            f"version: {name} {target} is not installed here, so it cannot be rolled back to"
        )
    health_timeout = _validate_timeout(health_timeout)
    saved = releases.settings()
    if not saved:
        raise SaltInvocationError(f"name: {name} was never activated on this minion")
    with releases.lock():
        return _go_live(releases, target, saved, saved, health_timeout, "rollback")


def restart_app(name, health_timeout=30, settle=0):
    """
    Restart the live release's service and wait until it is healthy again.

    name
        The app name.

    health_timeout
        Seconds the release has to become healthy. Default: ``30``

    settle
        Seconds the restarted release must then stay healthy, watched here on the client (a
        probe every 0.2 s); the restart fails at its first failed probe. Default: ``0``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.restart_app hello settle=10
    """
    releases = _releases(name)
    current, settings = releases.current(), releases.settings()
    if not current or not settings:
        raise SaltInvocationError(f"name: {name} has no live release on this minion")
    health_timeout = _validate_timeout(health_timeout)
    settle = _validate_seconds(settle, "settle", allow_zero=True)
    backend = _backend()

    with releases.lock():
        _start(backend, releases, current, settings, force_restart=True)
        healthy, reason = _gate(backend, releases, current, settings, health_timeout)
        problem = None if healthy else f"unhealthy: {reason}"
        if healthy and settle:
            expect = settings.get("health_expect") or current
            healthy, relapse = outpost_health.stays_healthy(_health_url(settings), expect, settle)
            problem = None if healthy else f"unhealthy again: {relapse}"
    releases.record("restart", current, result=healthy, reason=problem or reason)
    log.info("restarted %s %s: %s", name, current, problem or reason)
    if problem:
        raise outpost_release.HealthError(f"{name} {current} restarted but is {problem}")
    return {"restarted": current, "health": reason}


# -- planning -----------------------------------------------------------------------------------


def plan_release(name, version, source_hash, keep=3, health_timeout=30, complete=False, **settings):
    """
    Say what making a release live would change, without changing anything.

    Environment values are never shown: only the names of variables that would change.

    name
        The app name.

    version
        The release that should be live.

    source_hash
        Its sha256.

    keep
        How many releases to keep afterwards. Default: ``3``

    health_timeout
        Only checked here, so that a bad value fails before anything changes. Default: ``30``

    complete
        The settings given are all there are (see ``shiv_app.activate_release``). Default:
        ``False``

    settings
        ``python``, ``port``, ``args``, ``env``, ``health_url``, ``health_expect``, ``user``, as
        for ``shiv_app.activate_release``.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.plan_release hello 1.1.0 <sha256> python=/usr/bin/python3.11 port=8080
    """
    releases = _releases(name)
    outpost_release.validate_version(version)
    expected = outpost_release.normalize_sha256(source_hash)
    unknown = set(settings) - set(SETTING_FIELDS) - {key for key in settings if key[:2] == "__"}
    if unknown:
        raise SaltInvocationError(f"{sorted(unknown)[0]}: not a setting of shiv_app")
    keep = _validate_keep(keep)
    _validate_timeout(health_timeout)
    saved = releases.settings()
    given = {key: settings.get(key) for key in SETTING_FIELDS}
    wanted = _merge_settings(saved, complete=complete, **given)
    current = releases.current()
    plan = {}

    _check_same_content(releases, version, expected)
    if not releases.is_installed(version):
        plan["installed"] = version
    if current != version:
        plan["version"] = {"old": current, "new": version}
    changed_settings = _settings_diff(saved, wanted)
    if changed_settings:
        plan["settings"] = changed_settings
    if not plan:
        service = _service_drift(name, wanted, version)
        if service:
            plan["service"] = service

    pruned = _predict_pruned(releases, version, current, keep)
    if pruned:
        plan["pruned"] = pruned
    return plan


def _service_drift(name, settings, version):
    """A live release whose service stopped, or that stopped answering, needs a restart."""
    service = _backend().status(_service_name(name))
    if not service["running"]:
        return {"old": service["state"], "new": "RUNNING"}
    expect = settings.get("health_expect") or version
    healthy, reason = outpost_health.probe(_health_url(settings), expect)
    if not healthy:
        return {"old": f"RUNNING, unhealthy: {reason}", "new": "RUNNING, healthy"}
    return None


def _check_same_content(releases, version, expected):
    """A published version never changes content; a different hash means a mistake upstream."""
    info = releases.release_info(version)
    if info and info.get("sha256") != expected:
        raise SaltInvocationError(
            f"source_hash: {releases.app} {version} is already installed with sha256 "
            f"{info.get('sha256')}; a release never changes, so publish a new version"
        )


def _settings_diff(saved, wanted):
    saved = saved or {}
    diff = {}
    for field in SETTING_FIELDS:
        if field == "env":
            continue
        if saved.get(field) != wanted.get(field):
            diff[field] = {"old": saved.get(field), "new": wanted.get(field)}
    old_env, new_env = saved.get("env") or {}, wanted.get("env") or {}
    env_diff = {
        "added": sorted(set(new_env) - set(old_env)),
        "removed": sorted(set(old_env) - set(new_env)),
        "changed": sorted(k for k in set(old_env) & set(new_env) if old_env[k] != new_env[k]),
    }
    env_diff = {kind: names for kind, names in env_diff.items() if names}
    if env_diff:
        diff["env"] = env_diff
    return diff


def _predict_pruned(releases, version, current, keep):
    installed = [info["version"] for info in releases.releases() if info["version"] != version]
    installed.append(version)
    previous = current if current and current != version else releases.previous()
    return releases.prunable(keep, installed=installed, protected={version, previous})


# -- reading ------------------------------------------------------------------------------------


def list_releases(name):
    """
    List the releases installed for an app, oldest first, marking the current and previous.

    name
        The app name.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.list_releases hello
    """
    releases = _releases(name)
    current, previous = releases.current(), releases.previous()
    listed = []
    for info in releases.releases():
        entry = dict(info)
        entry["current"] = info["version"] == current
        entry["previous"] = info["version"] == previous
        listed.append(entry)
    return listed


def show_current(name):
    """
    Show the live release of an app, or ``None`` when it has none.

    name
        The app name.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.show_current hello
    """
    releases = _releases(name)
    current = releases.current()
    return releases.release_info(current) if current else None


def check_health(name, url=None, expect=None, timeout=2, retries=3):
    """
    Check the health of the live release over HTTP.

    name
        The app name.

    url
        The URL to check. Default: the app's health URL

    expect
        The version the answer must report. Default: the live version

    timeout
        Seconds per request. Default: ``2``

    retries
        Requests to make before calling the app unhealthy. Default: ``3``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.check_health hello
    """
    releases = _releases(name)
    settings = releases.settings() or {}
    if not url and "port" not in settings:
        raise SaltInvocationError(f"name: {name} has no live release on this minion; give url")
    url = outpost_health.validate_url(url) if url else _health_url(settings)
    expect = expect or settings.get("health_expect") or releases.current()
    timeout, retries = _validate_seconds(timeout, "timeout"), _validate_retries(retries)

    reason = "not checked"
    for _ in range(retries):
        healthy, reason = outpost_health.probe(url, expect, timeout=timeout)
        if healthy:
            return {"healthy": True, "reason": reason, "version": expect}
    return {"healthy": False, "reason": reason, "version": expect}


def list_apps():
    """
    List the apps that have a live release on this minion.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.list_apps
    """
    apps_dir = os.path.join(_root(), "apps")
    if not os.path.isdir(apps_dir):
        return []
    names = [name for name in os.listdir(apps_dir) if outpost_release.APP_NAME.fullmatch(name)]
    return sorted(name for name in names if _releases(name).current())


def get_status(name, quick=False):
    """
    Show an app's live release, its service state and pid, its health, and whether a switch,
    restart or rollback is under way (``changing``).

    name
        The app name.

    quick
        Ask the service manager only when the health check fails, and leave ``service`` and
        ``pid`` ``None`` otherwise: what the ``app_health`` beacon does every few seconds,
        since asking supervisorctl or PowerShell costs far more than the HTTP check.
        Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.get_status hello
    """
    releases = _releases(name)
    current = releases.current()
    status = {
        "app": name,
        "current": current,
        "previous": releases.previous(),
        "service": None,
        "pid": None,
        "healthy": False,
        "reason": "no live release",
        "live_since": releases.live_since(),
        "changing": releases.changing(),
    }
    if current and releases.settings():
        health = check_health(name, retries=1)
        status.update(healthy=health["healthy"], reason=health["reason"])
    if not (quick and status["healthy"]):
        service = _backend().status(_service_name(name))
        status.update(service=service["state"], pid=service["pid"])
    return status


def read_journal(name, limit=20):
    """
    Show the newest entries of an app's deployment journal.

    name
        The app name.

    limit
        How many entries, newest last. Default: ``20``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.read_journal hello limit=5
    """
    if isinstance(limit, bool) or not str(limit).isdecimal() or int(limit) < 1:
        raise SaltInvocationError(f"limit: {limit!r} is not a positive whole number")
    return _releases(name).journal(limit=int(limit))


# -- removing -----------------------------------------------------------------------------------


def prune_releases(name, keep=3):
    """
    Remove old releases beyond the newest ``keep``, with their extraction folders.

    The current and previous releases are always kept, so a rollback never needs a download.

    name
        The app name.

    keep
        How many of the newest releases to keep. Default: ``3``

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.prune_releases hello keep=2
    """
    releases = _releases(name)
    keep = _validate_keep(keep)
    with releases.lock():
        pruned = releases.prunable(keep)
        for version in pruned:
            releases.remove_release(version)
    if pruned:
        releases.record("prune", None, removed=pruned, keep=keep)
        log.info("pruned %s releases %s", name, ", ".join(pruned))
    return pruned


def remove_app(name):
    """
    Stop and unregister an app's service and delete its releases and settings.

    The journal stays, so what happened to the app can still be read.

    name
        The app name.

    CLI Example:

    .. code-block:: bash

        salt '*' shiv_app.remove_app hello
    """
    releases = _releases(name)
    if not releases.exists():
        return False

    with releases.lock():
        _backend().remove(_service_name(name))
        kept = {os.path.basename(releases.journal_path), ".lock"}
        for entry in set(os.listdir(releases.app_dir)) - kept:
            path = os.path.join(releases.app_dir, entry)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        releases.record("remove", None)
    log.info("removed app %s", name)
    return True
