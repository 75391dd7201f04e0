"""
Keep cloudflared, the Cloudflare Tunnel connector, installed, configured and connected.

A locally managed tunnel keeps its ingress in config.yml:

.. code-block:: yaml

    cloudflared-binary:
      cloudflared.installed:
        - version: 2025.8.1
        - source: salt://artifacts/cloudflared/cloudflared-2025.8.1-windows-amd64.exe
        - source_hash: sha256=<64 hex digits>

    cloudflared-config:
      cloudflared.configured:
        - tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
        - metrics: 127.0.0.1:20241
        - ingress:
          - hostname: hello.example.com
            app: hello                       # or service: http://127.0.0.1:8080
          - service: http_status:404
        - require:
          - shiv_app: hello

    cloudflared-service:
      cloudflared.running:
        - token_pillar: outpost:cloudflared:token
        - require:
          - cloudflared: cloudflared-binary
          - cloudflared: cloudflared-config

A remotely managed tunnel takes its ingress from Cloudflare: ``configured`` with ``ingress: []``
and no ``tunnel``. Give the token through ``token_pillar``, not ``token``: a ``token`` written in
an SLS is rendered into it, and one given on the command line travels in the job's arguments.
"""

from salt.exceptions import SaltException

__virtualname__ = "cloudflared"

DEFAULT_METRICS = "127.0.0.1:20241"
DEFAULT_TOKEN_PILLAR = "outpost:cloudflared:token"  # noqa: S105 - where it is, not what


def __virtual__():
    if "cloudflared.plan_service" in __salt__:
        return __virtualname__
    return (False, "cloudflared state: the cloudflared execution module is not loaded")


def _ret(name, comment):
    return {"name": name, "changes": {}, "result": True, "comment": comment}


def _fail(ret, name, err):
    ret.update(result=False, changes={}, comment=f"{name}: {err}")
    return ret


def installed(name, version, source, source_hash, ready_timeout=30):
    """
    Make ``version`` of cloudflared the one at ``<root>/bin/cloudflared[.exe]``.

    name
        The state's ID; there is one cloudflared per client.

    version
        The pinned cloudflared version.

    source
        ``salt://`` path or ``https://`` URL of the binary; read only when it is not there yet.

    source_hash
        Its sha256; checked before the binary moves into place.

    ready_timeout
        Seconds a connector restarted onto the new binary has to report ready. Default: ``30``
    """
    ret = _ret(name, f"cloudflared {version} is installed")
    try:
        plan = __salt__["cloudflared.plan_binary"](version, source_hash)
        if not plan:
            return ret
        if __opts__["test"]:
            restart = " and restart the connector" if "restarted" in plan else ""
            ret.update(
                result=None, changes=plan, comment=f"would install cloudflared {version}{restart}"
            )
            return ret

        __salt__["cloudflared.install_binary"](
            version, source, source_hash, ready_timeout=ready_timeout
        )
        if __salt__["cloudflared.plan_binary"](version, source_hash):
            raise SaltException("the binary on disk is still not the one asked for")
    except SaltException as err:
        return _fail(ret, name, err)

    ret.update(changes=plan, comment=f"installed cloudflared {version}")
    return ret


def configured(name, ingress, tunnel=None, metrics=DEFAULT_METRICS, apps=None):
    """
    Make ``<root>/cloudflared/config.yml`` say what is asked, after checking all of it.

    A bad ingress list fails naming the rule (``ingress[2]: ...``) and leaves the file there as
    it was. A running connector reads the file when it starts: ``cloudflared.running`` restarts
    it after a change.

    name
        The state's ID; there is one config.yml per client.

    ingress
        The rules of a locally managed tunnel, the last a catch-all; ``[]`` for a remotely
        managed one. Each has an optional ``hostname`` (``*.`` wildcards as the first label) and
        ``path`` (a regular expression anchored with ``^``), a ``service``
        (``http://127.0.0.1:<port>`` or ``http_status:<code>``) or the ``app`` it reaches, and an
        optional ``originRequest``.

    tunnel
        The UUID of a locally managed tunnel. Default: none, a remotely managed tunnel

    metrics
        Where the metrics and ``/ready`` server listens, on 127.0.0.1. Default:
        ``127.0.0.1:20241``

    apps
        App names and their ports that origins must match. Default: the apps outpost runs on
        this client, from their shiv_app settings
    """
    ret = _ret(name, "config.yml is already as requested")
    settings = {"ingress": ingress, "tunnel": tunnel, "metrics": metrics, "apps": apps}
    try:
        plan = __salt__["cloudflared.plan_config"](**settings)
        if not plan:
            return ret
        if __opts__["test"]:
            ret.update(
                result=None,
                changes=plan,
                comment=f"would write config.yml: {', '.join(sorted(plan))}",
            )
            return ret

        __salt__["cloudflared.write_config"](**settings)
        if __salt__["cloudflared.plan_config"](**settings):
            raise SaltException("config.yml still differs after it was written")
    except SaltException as err:
        return _fail(ret, name, err)

    ret.update(changes=plan, comment=f"wrote config.yml: {', '.join(sorted(plan))}")
    return ret


def running(name, token=None, token_pillar=DEFAULT_TOKEN_PILLAR, ready_timeout=30):
    """
    Keep the connector's service running with the config.yml and token asked for, and
    connected: its ``/ready`` answers 200 with ready connections.

    The service starts ``cloudflared tunnel --no-autoupdate --config <path> --metrics <address>
    run``; its registered command line is read back and checked after every change. The token
    is checked for its shape first and only ever reported as "changed".

    name
        The state's ID; there is one connector per client.

    token
        The tunnel token. Prefer ``token_pillar``. Default: the one in pillar

    token_pillar
        Where in pillar the token is. Default: ``outpost:cloudflared:token``

    ready_timeout
        Seconds a (re)started connector has to report ready. Default: ``30``
    """
    ret = _ret(name, "cloudflared is running, connected and as requested")
    secret = {"token": token, "token_pillar": token_pillar}
    # A dry run before the tunnel exists (orch.expose) has no token yet; masked, pillar.get
    # still tells whether there is one.
    if __opts__["test"] and token is None and not __salt__["pillar.get"](token_pillar):
        ret.update(
            result=None,
            changes={"service": {"old": None, "new": "RUNNING"}},
            comment=f"would start cloudflared once pillar {token_pillar} holds the tunnel token",
        )
        return ret
    try:
        plan = __salt__["cloudflared.plan_service"](**secret)
        if not plan:
            return ret
        if __opts__["test"]:
            ret.update(
                result=None,
                changes=plan,
                comment=f"would (re)start cloudflared: {', '.join(sorted(plan))}",
            )
            return ret

        __salt__["cloudflared.apply_service"](**secret, ready_timeout=ready_timeout)
        left = __salt__["cloudflared.plan_service"](**secret)
        if left:
            raise SaltException(f"still to change after starting it: {', '.join(sorted(left))}")
    except SaltException as err:
        return _fail(ret, name, err)

    ret.update(changes=plan, comment=f"(re)started cloudflared: {', '.join(sorted(plan))}")
    return ret


def mod_watch(name, sfun=None, ready_timeout=30, **kwargs):
    """
    Restart the connector when a watched state changed, then wait until it is ready.

    .. code-block:: yaml

        cloudflared-service:
          cloudflared.running:
            - watch:
              - cloudflared: cloudflared-config
    """
    ret = _ret(name, "cloudflared restarted")
    if sfun != "running":
        ret.update(result=False, comment=f"cloudflared.{sfun} cannot be watched")
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes={"restarted": name}, comment="would restart cloudflared")
        return ret
    try:
        __salt__["cloudflared.restart_service"](ready_timeout=ready_timeout)
    except SaltException as err:
        return _fail(ret, name, err)
    ret["changes"] = {"restarted": name}
    return ret
