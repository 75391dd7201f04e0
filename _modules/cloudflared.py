"""
Run cloudflared, the Cloudflare Tunnel connector, on a client: a pinned binary, a checked
config.yml and one service, ``outpost-cloudflared``, through outpost's service backend.

Everything lives under the outpost root (``outpost:root``; ``C:\\outpost`` on Windows,
``/opt/outpost`` elsewhere); see ``_utils/outpost_cloudflared.py`` for the layout. The tunnel
token comes from pillar (``outpost:cloudflared:token`` unless told otherwise) and is never shown:
not in a return, a log line or an error.

Pillar::

    outpost:
      cloudflared:
        token: eyJhIjoi...     # Zero Trust > Networks > Tunnels > the tunnel > its install command
"""

import logging
import os
import urllib.parse

import salt.utils.platform
from salt.exceptions import SaltInvocationError

# Synced _utils are importable by their bare name while Salt's loader loads this module.
import outpost_cloudflared
import outpost_release
import outpost_service

log = logging.getLogger(__name__)

__virtualname__ = "cloudflared"


def __virtual__():
    return __virtualname__


# -- configuration ------------------------------------------------------------------------------


def _config_get(key, default=None):
    return __salt__["config.get"](key, default)


def _layout():
    windows = salt.utils.platform.is_windows()
    default = r"C:\outpost" if windows else "/opt/outpost"
    root = _config_get("outpost:root", default)
    if windows:
        outpost_cloudflared.refuse_user_profile(root)
    return outpost_cloudflared.Layout(root, windows=windows)


def _backend():
    return outpost_service.backend_for(__salt__, _config_get)


def _connector():
    return outpost_cloudflared.Connector(_layout(), _backend(), __salt__)


def _token(token, token_pillar):
    """The token given, or else the one in pillar; never logged, never returned."""
    if token is None:
        # Since 3008 pillar.get returns "**********" for every value unless asked to unmask.
        token = __salt__["pillar.get"](token_pillar, None, unmask=True)
        if not token:
            raise SaltInvocationError(f"token: none given, and pillar {token_pillar} is empty")
    return token


def _known_apps():
    """Ports of the apps outpost runs here, from their shiv_app settings."""
    root = _layout().root
    apps_dir = os.path.join(root, "apps")
    if not os.path.isdir(apps_dir):
        return {}
    ports = {}
    for name in sorted(os.listdir(apps_dir)):
        if not outpost_release.APP_NAME.fullmatch(name):
            continue
        settings = outpost_release.AppReleases(root, name).settings() or {}
        if settings.get("port"):
            ports[name] = int(settings["port"])
    return ports


def _apps(apps):
    if apps is None:
        return _known_apps()
    if not isinstance(apps, dict):
        raise SaltInvocationError("apps: expected a mapping of app names to ports")
    return {str(name): int(port) for name, port in apps.items()}


# -- the binary ---------------------------------------------------------------------------------


def show_binary():
    """
    Show the installed cloudflared: path, version, and the sha256 of the file on disk.

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.show_binary
    """
    layout = _layout()
    actual = outpost_cloudflared.binary_sha256(layout)
    if actual is None:
        return None
    record = outpost_cloudflared.binary_record(layout) or {}
    recorded = record.get("sha256") == actual
    return {
        "path": layout.binary,
        "version": record.get("version") if recorded else None,
        "sha256": actual,
    }


def plan_binary(version, source_hash):
    """
    Say what installing ``version`` with sha256 ``source_hash`` would change.

    version
        The cloudflared version, e.g. ``2025.8.1``.

    source_hash
        Its sha256, as 64 hex digits or ``sha256=<hex>``.

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.plan_binary 2025.8.1 <sha256>
    """
    outpost_release.validate_version(version)
    expected = outpost_release.normalize_sha256(source_hash)
    current = show_binary()
    if current and current["sha256"] == expected and current["version"] == version:
        return {}
    plan = {"version": {"old": current and current["version"], "new": version}}
    replaced = current and current["sha256"] != expected
    if replaced and _backend().status(outpost_cloudflared.SERVICE_NAME)["running"]:
        plan["restarted"] = outpost_cloudflared.SERVICE_NAME
    return plan


def install_binary(version, source, source_hash, ready_timeout=30):
    """
    Install a pinned cloudflared at ``<root>/bin/cloudflared[.exe]``, checked by sha256 first.

    Nothing is downloaded when the binary there already has that sha256. A running connector is
    stopped while the binary is replaced, started again and waited for until it is ready.

    version
        The cloudflared version, e.g. ``2025.8.1``.

    source
        ``salt://`` path or ``https://`` URL of the binary in the artifact store.

    source_hash
        Its sha256, as 64 hex digits or ``sha256=<hex>``.

    ready_timeout
        Seconds a restarted connector has to report ready. Default: ``30``

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.install_binary 2025.8.1 salt://cloudflared/2025.8.1.exe <sha256>
    """
    layout = _layout()
    outpost_release.validate_version(version)
    expected = outpost_release.normalize_sha256(source_hash)
    current = show_binary()
    if current and current["sha256"] == expected:
        if current["version"] == version:
            return {"installed": False, "version": version}
        record = outpost_cloudflared.record_binary(layout, version, expected)
        return {"installed": False, "version": version, "record": record}

    staged = layout.stage_path(version)
    _download(source, staged)
    actual = outpost_release.sha256_of(staged)
    if actual != expected:
        os.remove(staged)
        raise outpost_cloudflared.CloudflaredError(
            f"source_hash: {source} has sha256 {actual}, expected {expected}; nothing was installed"
        )

    connector = _connector()
    was_running = connector.status()["running"]
    if was_running:
        # Windows keeps a running program's file locked: stop first, on every platform alike.
        connector.backend.stop(outpost_cloudflared.SERVICE_NAME)
    record = outpost_cloudflared.put_binary(layout, staged, version, expected)
    log.info("installed cloudflared %s at %s", version, layout.binary)
    if was_running:
        connector.backend.start(outpost_cloudflared.SERVICE_NAME)
        config = outpost_cloudflared.read_config(layout)
        connector.require_ready(
            config.get("metrics", outpost_cloudflared.DEFAULT_METRICS), float(ready_timeout)
        )
        log.info("restarted cloudflared on %s", version)
    return {"installed": True, "version": version, "record": record, "restarted": was_running}


def _download(source, destination):
    scheme = urllib.parse.urlparse(str(source)).scheme
    if scheme not in ("salt", "https"):
        raise SaltInvocationError(f"source: {source} is not a salt:// or https:// URL")
    if not __salt__["cp.get_url"](str(source), destination):
        raise outpost_cloudflared.CloudflaredError(f"source: could not fetch {source}")


# -- config.yml ---------------------------------------------------------------------------------


def validate_ingress(ingress, apps=None):
    """
    Check ingress rules the way ``cloudflared.configured`` does, and show them as written.

    ingress
        The rules, the last a catch-all. Each has ``hostname`` and ``path`` (optional),
        ``service`` (``http://127.0.0.1:<port>`` or ``http_status:<code>``) or ``app`` (an app
        outpost runs here), and optional ``originRequest``.

    apps
        App names and their ports. Default: the apps outpost runs on this client

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.validate_ingress '[{"hostname": "hello.example.com", "app": "hello"},
            {"service": "http_status:404"}]'
    """
    return outpost_cloudflared.validate_ingress(ingress, _apps(apps))


def _config_plan(ingress, tunnel, metrics, apps):
    """The layout, config.yml's text as asked, and what writing it would change."""
    layout, text = _wanted_config(ingress, tunnel, metrics, apps)
    current = outpost_cloudflared.read_text(layout.config_path)
    return layout, text, outpost_cloudflared.config_changes(current, text)


def _wanted_config(ingress, tunnel, metrics, apps):
    layout = _layout()
    metrics = outpost_cloudflared.validate_metrics(metrics)
    if tunnel is None:
        if ingress:
            raise SaltInvocationError(
                "ingress: a remotely managed tunnel (no tunnel given) takes its ingress from "
                "Cloudflare; give tunnel: <UUID> to keep ingress in config.yml"
            )
        return layout, outpost_cloudflared.render_config(layout, metrics)
    tunnel = outpost_cloudflared.validate_tunnel(tunnel)
    rules = outpost_cloudflared.validate_ingress(ingress, _apps(apps))
    return layout, outpost_cloudflared.render_config(layout, metrics, tunnel, rules)


def plan_config(ingress=None, tunnel=None, metrics=outpost_cloudflared.DEFAULT_METRICS, apps=None):
    """
    Say which settings of config.yml writing it would change, after checking them all.

    ingress
        The ingress rules of a locally managed tunnel (see ``cloudflared.validate_ingress``).
        Default: none, for a remotely managed tunnel

    tunnel
        The UUID of a locally managed tunnel. Default: none, a remotely managed tunnel

    metrics
        Where the metrics and ``/ready`` server listens. Default: ``127.0.0.1:20241``

    apps
        App names and their ports. Default: the apps outpost runs on this client

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.plan_config tunnel=<uuid> ingress='[{"service": "http_status:404"}]'
    """
    return _config_plan(ingress, tunnel, metrics, apps)[2]


def write_config(ingress=None, tunnel=None, metrics=outpost_cloudflared.DEFAULT_METRICS, apps=None):
    """
    Check the settings, then write config.yml at ``<root>/cloudflared/config.yml``.

    Nothing is written when a check fails. A running connector reads the file when it starts:
    apply ``cloudflared.running`` afterwards.

    ingress
        The ingress rules of a locally managed tunnel. Default: none, for a remotely managed tunnel

    tunnel
        The UUID of a locally managed tunnel. Default: none

    metrics
        Where the metrics and ``/ready`` server listens. Default: ``127.0.0.1:20241``

    apps
        App names and their ports. Default: the apps outpost runs on this client

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.write_config tunnel=<uuid> ingress='[{"service": "http_status:404"}]'
    """
    layout, text, changes = _config_plan(ingress, tunnel, metrics, apps)
    if not changes:
        return {"written": False, "path": layout.config_path}
    if not os.path.isdir(layout.config_dir):
        os.makedirs(layout.config_dir, mode=0o700)
    # The credentials file lands in this folder: SYSTEM and administrators only on Windows.
    _backend().protect_folder(layout.config_dir)
    outpost_release.write_atomically(layout.config_path, text, mode=0o600)
    log.info("wrote %s: %s", layout.config_path, ", ".join(sorted(changes)))
    return {"written": True, "path": layout.config_path, "changes": changes}


def read_config():
    """
    Show config.yml as cloudflared reads it.

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.read_config
    """
    return outpost_cloudflared.read_config(_layout())


# -- the service --------------------------------------------------------------------------------


def plan_service(token=None, token_pillar=outpost_cloudflared.DEFAULT_TOKEN_PILLAR):
    """
    Say what ``cloudflared.apply_service`` would change; the token only ever as "changed".

    token
        The tunnel token. Default: the one in pillar at ``token_pillar``

    token_pillar
        Where in pillar the token is. Default: ``outpost:cloudflared:token``

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.plan_service
    """
    return _connector().plan(_token(token, token_pillar))


def apply_service(
    token=None, token_pillar=outpost_cloudflared.DEFAULT_TOKEN_PILLAR, ready_timeout=30
):
    """
    Define and start the connector, read its registered command line back, and wait until its
    ``/ready`` says it is connected.

    The command line is ``cloudflared tunnel --no-autoupdate --config <path> --metrics <address>
    run``. A remotely managed tunnel gets its token in the environment variable ``TUNNEL_TOKEN``
    of a service definition readable by the service's account and administrators only; a locally
    managed one gets a credentials file written from it. On Windows, what an earlier
    ``cloudflared service install`` left behind is removed first.

    token
        The tunnel token. Default: the one in pillar at ``token_pillar``

    token_pillar
        Where in pillar the token is. Default: ``outpost:cloudflared:token``

    ready_timeout
        Seconds the connector has to report ready. Default: ``30``

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.apply_service
    """
    return _connector().apply(_token(token, token_pillar), ready_timeout=float(ready_timeout))


def restart_service(ready_timeout=30):
    """
    Restart the connector, waiting until it has stopped, and then until it is ready.

    ready_timeout
        Seconds the connector has to report ready. Default: ``30``

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.restart_service
    """
    _connector().restart(ready_timeout=float(ready_timeout))
    return True


def verify_service():
    """
    Read the connector's registered command line back and check it: the pinned binary,
    ``--no-autoupdate``, ``--config <path>``, and no token. On Windows the service's
    ``BinaryPath`` is checked too.

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.verify_service
    """
    connector = _connector()
    command = outpost_cloudflared.check_registration(
        connector.backend, connector.layout, connector.salt
    )
    return {"command": command}


def remove_service():
    """
    Stop and unregister the connector and delete its credentials; config.yml and the binary stay.

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.remove_service
    """
    removed = _connector().remove()
    if removed:
        log.info("removed the cloudflared service")
    return removed


def check_ready(metrics=None, timeout=2):
    """
    Ask the connector's ``/ready`` whether it is connected: healthy only on HTTP 200 with
    ``readyConnections`` above 0.

    metrics
        The metrics server's address. Default: the one in config.yml

    timeout
        Seconds to wait for the answer. Default: ``2``

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.check_ready
    """
    if metrics is None:
        config = outpost_cloudflared.read_config(_layout())
        metrics = config.get("metrics", outpost_cloudflared.DEFAULT_METRICS)
    metrics = outpost_cloudflared.validate_metrics(metrics)
    ready, reason, connections = outpost_cloudflared.probe_ready(metrics, timeout=float(timeout))
    return {"healthy": ready, "reason": reason, "ready_connections": connections}


def get_status():
    """
    Show the connector's service state and pid, its readiness, and the installed version.

    CLI Example:

    .. code-block:: bash

        salt '*' cloudflared.get_status
    """
    connector = _connector()
    if outpost_cloudflared.registered(connector.backend) is None:
        # Beacons ask every few seconds; a client without a connector need not ask its
        # service manager (which logs an error for an unknown service each time).
        service = {"state": "ABSENT", "pid": None, "running": False}
    else:
        service = connector.status()
    binary = show_binary()
    status = {
        "service": service["state"],
        "pid": service["pid"],
        "version": binary and binary["version"],
        "healthy": False,
        "reason": "not running",
    }
    if os.path.isfile(connector.layout.config_path):
        config = outpost_cloudflared.read_config(connector.layout)
        status["tunnel"] = "locally managed" if config.get("tunnel") else "remotely managed"
        if service["running"]:
            ready = check_ready()
            status.update(healthy=ready["healthy"], reason=ready["reason"])
    return status
