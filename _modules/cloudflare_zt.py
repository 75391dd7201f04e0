"""
Cloudflare Zero Trust objects, managed from the master with Cloudflare's official SDK: a
remotely managed tunnel, its ingress, a proxied DNS CNAME to it, Access applications and
policies, and WAF custom rules. These functions run where the master's configuration is: in
``salt-run state.orchestrate`` (see ``salt/orch/expose.sls``) or ``salt-run salt.cmd``.

Every ``plan_*`` reads Cloudflare and returns what its ``write_*`` would change, comparing only
the fields given; every ``remove_*`` takes ``dry_run``. The API token is read from the master
configuration (``outpost:cloudflare:api_token``, a string or a Vault reference) and never
returned or logged; see ``_utils/outpost_cloudflare.py`` for the settings.

CLI Example:

.. code-block:: bash

    salt-run salt.cmd cloudflare_zt.verify_token
"""

from salt.exceptions import SaltInvocationError

import outpost_cloudflare

__virtualname__ = "cloudflare_zt"


def __virtual__():
    if not outpost_cloudflare.HAS_CLOUDFLARE:
        return (False, "cloudflare_zt: the cloudflare SDK is not installed (a master-side module)")
    return __virtualname__


def _api():
    return outpost_cloudflare.API(__opts__)


def _zone(zone):
    return outpost_cloudflare.zone_id(__opts__, zone)


def _target(api, tunnel, target, predict=False):
    if bool(tunnel) == bool(target):
        raise SaltInvocationError("tunnel, target: give exactly one")
    if target:
        return outpost_cloudflare.check_hostname(target, "target")
    found = outpost_cloudflare.find_tunnel(api, tunnel)
    if found is None and predict:
        # A dry run of a whole exposure: the tunnel is created by an earlier state.
        return outpost_cloudflare.tunnel_target(f"<id of tunnel {tunnel}>")
    return outpost_cloudflare.tunnel_target(outpost_cloudflare.tunnel_id(api, tunnel))


def verify_token():
    """
    Ask Cloudflare whether the configured API token is valid and active.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.verify_token
    """
    return outpost_cloudflare.verify_token(_api())


# -- tunnels ---------------------------------------------------------------------------------


def get_tunnel(name):
    """
    Show the tunnel named ``name`` (id, status, config_src), or None.

    name
        The tunnel's name.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.get_tunnel outpost-client-1
    """
    tunnel = outpost_cloudflare.find_tunnel(_api(), name)
    if tunnel is None:
        return None
    return {key: tunnel.get(key) for key in ("id", "name", "status", "config_src", "created_at")}


def plan_tunnel(name, client=None):
    """
    Say what ``write_tunnel`` would change: the tunnel created, its token stored for ``client``.

    name
        The tunnel's name.

    client
        The minion id whose cloudflared runs the tunnel; its token is stored for it. Default:
        none, the token is not stored

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.plan_tunnel outpost-client-1 client=client-1
    """
    return outpost_cloudflare.plan_tunnel(_api(), name, client)[0]


def write_tunnel(name, client=None):
    """
    Create the remotely managed tunnel ``name`` unless it exists, and store its token where
    ``client`` gets it from (its pillar ``outpost:cloudflared:token``). The token is never
    returned.

    name
        The tunnel's name.

    client
        The minion id whose cloudflared runs the tunnel. Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.write_tunnel outpost-client-1 client=client-1
    """
    changes, tunnel = outpost_cloudflare.apply_tunnel(_api(), name, client)
    return {"id": tunnel["id"], "name": name, "changes": changes}


def remove_tunnel(name, client=None, dry_run=False):
    """
    Delete the tunnel ``name`` (its connections are cleaned up first) and the token stored for
    ``client``.

    name
        The tunnel's name.

    client
        The minion id the token was stored for. Default: none

    dry_run
        Only say what would be removed. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.remove_tunnel outpost-client-1 client=client-1
    """
    return outpost_cloudflare.remove_tunnel(_api(), name, client, dry_run=bool(dry_run))


# -- ingress ---------------------------------------------------------------------------------


def get_ingress(tunnel):
    """
    Show the tunnel's ingress rules and the configuration's version.

    tunnel
        The tunnel's name.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.get_ingress outpost-client-1
    """
    api = _api()
    version, config = outpost_cloudflare.read_ingress(
        api, outpost_cloudflare.tunnel_id(api, tunnel)
    )
    return {"version": version, "ingress": config.get("ingress") or []}


def _ingress_args(rules, remove):
    rules = outpost_cloudflare.check_rules(rules) if rules else []
    remove = [outpost_cloudflare.check_hostname(h, "hostnames") for h in remove or []]
    return rules, remove


def plan_ingress(tunnel, rules=None, remove=None):
    """
    Say which of the tunnel's ingress rules ``write_ingress`` would change.

    tunnel
        The tunnel's name.

    rules
        Rules to put in: each ``hostname``, ``service`` (``http://127.0.0.1:<port>`` as the
        client sees it, or ``http_status:<code>``), optional ``path`` and ``originRequest``.
        Default: none

    remove
        Host names whose rules to take out. Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.plan_ingress outpost-client-1 \\
            rules='[{"hostname": "hello.example.com", "service": "http://127.0.0.1:8080"}]'
    """
    rules, remove = _ingress_args(rules, remove)
    return outpost_cloudflare.plan_ingress(_api(), tunnel, rules, remove, predict=True)[0]


def write_ingress(tunnel, rules=None, remove=None):
    """
    Merge ``rules`` into the tunnel's ingress (and take ``remove`` out), keeping every other
    rule; a configuration changed by someone else meanwhile is merged with again, not lost.

    tunnel
        The tunnel's name.

    rules
        Rules to put in (see ``plan_ingress``). Default: none

    remove
        Host names whose rules to take out. Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.write_ingress outpost-client-1 remove='[old.example.com]'
    """
    rules, remove = _ingress_args(rules, remove)
    return outpost_cloudflare.apply_ingress(_api(), tunnel, rules, remove)


# -- DNS -------------------------------------------------------------------------------------


def _cname(name, zone, tunnel, target, proxied, ttl, comment, predict=False):
    api = _api()
    name = outpost_cloudflare.check_hostname(name, "name")
    content = _target(api, tunnel, target, predict)
    fields = outpost_cloudflare.cname_fields(content, proxied, ttl, comment)
    return api, _zone(zone), name, fields


def plan_cname(name, zone, tunnel=None, target=None, proxied=True, ttl=None, comment=None):
    """
    Say what ``write_cname`` would change on the CNAME ``name``.

    name
        The host name, e.g. ``hello.example.com``.

    zone
        The zone's id, or its name in ``outpost:cloudflare:zones``.

    tunnel
        The tunnel whose ``<id>.cfargotunnel.com`` the record points at (or give ``target``).

    target
        The record's content instead. Default: none

    proxied
        Whether Cloudflare proxies it. Default: ``True``

    ttl
        The TTL; compared only when given. Default: none (Cloudflare's automatic)

    comment
        A comment; compared only when given. Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.plan_cname hello.example.com example.com \\
            tunnel=outpost-client-1
    """
    api, zone, name, fields = _cname(name, zone, tunnel, target, proxied, ttl, comment, True)
    return outpost_cloudflare.plan_cname(api, zone, name, fields)[0]


def write_cname(name, zone, tunnel=None, target=None, proxied=True, ttl=None, comment=None):
    """
    Create the proxied CNAME ``name``, or update the one there in place; never a second one.

    name
        The host name.

    zone
        The zone's id or name.

    tunnel
        The tunnel it points at (or give ``target``).

    target
        The record's content instead. Default: none

    proxied
        Default: ``True``

    ttl
        Default: none

    comment
        Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.write_cname hello.example.com example.com \\
            tunnel=outpost-client-1
    """
    api, zone, name, fields = _cname(name, zone, tunnel, target, proxied, ttl, comment)
    return outpost_cloudflare.apply_cname(api, zone, name, fields)


def remove_cname(name, zone, tunnel=None, target=None, dry_run=False):
    """
    Delete the CNAME ``name``; when ``tunnel`` or ``target`` is given, only if it points there.

    name
        The host name.

    zone
        The zone's id or name.

    tunnel
        Delete only a record pointing at this tunnel. Default: none

    target
        Delete only a record with this content. Default: none

    dry_run
        Only say what would be removed. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.remove_cname hello.example.com example.com
    """
    api = _api()
    name = outpost_cloudflare.check_hostname(name, "name")
    expected = None
    if tunnel and not target and outpost_cloudflare.find_tunnel(api, tunnel) is None:
        # The tunnel is gone already: any tunnel's address, and nothing else, counts as ours.
        expected = "." + outpost_cloudflare.TUNNEL_DOMAIN
    elif tunnel or target:
        expected = _target(api, tunnel, target)
    changes, note = outpost_cloudflare.remove_cname(
        api, _zone(zone), name, expected, dry_run=bool(dry_run)
    )
    return {"changes": changes, "note": note}


# -- Access ----------------------------------------------------------------------------------


def _policy_fields(
    name, emails, email_domains, groups, require_mfa, include, require, exclude, session_duration
):
    """The policy as outpost writes it, from the arguments of ``plan_policy`` and
    ``write_policy``. They pass ``**locals()`` as their first statement, so the two build it
    from the same names and a parameter added to one but not here fails at once."""
    allowed = outpost_cloudflare.policy_rules(emails, email_domains, groups, include)
    return outpost_cloudflare.policy_fields(
        name, allowed, require_mfa, require, exclude, session_duration
    )


def plan_policy(
    name,
    emails=None,
    email_domains=None,
    groups=None,
    require_mfa=True,
    include=None,
    require=None,
    exclude=None,
    session_duration=None,
):
    """
    Say what ``write_policy`` would change on the reusable Access policy ``name``.

    name
        The policy's name, unique in the account.

    emails
        Email addresses let in. Default: none

    email_domains
        Email domains let in. Default: none

    groups
        Identity provider groups let in, each ``{provider: okta|azure|google|github|saml,
        idp: <identity provider id>, name: <group>}``. Default: none

    require_mfa
        Everyone let in must have signed in with MFA. Default: ``True``

    include
        Further Access rules let in, as Cloudflare writes them. Default: none

    require
        Further Access rules everyone must also meet. Default: none

    exclude
        Access rules keeping people out. Default: none

    session_duration
        e.g. ``8h``; compared only when given. Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.plan_policy hello-staff emails='[ops@example.com]'
    """
    fields = _policy_fields(**locals())
    return outpost_cloudflare.plan_policy(_api(), fields)[0]


def write_policy(
    name,
    emails=None,
    email_domains=None,
    groups=None,
    require_mfa=True,
    include=None,
    require=None,
    exclude=None,
    session_duration=None,
):
    """
    Create or update the reusable Access policy ``name`` (decision ``allow``); Access denies
    everyone no policy of an application lets in.

    name
        The policy's name. Other parameters as ``plan_policy``.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.write_policy hello-staff emails='[ops@example.com]'
    """
    fields = _policy_fields(**locals())
    return outpost_cloudflare.apply_policy(_api(), fields)


def remove_policy(name, dry_run=False):
    """
    Delete the reusable Access policy ``name``; Cloudflare refuses while an application uses it.

    name
        The policy's name.

    dry_run
        Only say what would be removed. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.remove_policy hello-staff
    """
    return outpost_cloudflare.remove_policy(_api(), name, dry_run=bool(dry_run))


def _app(domain, policies, app_name, settings, predict=False):
    api = _api()
    domain = outpost_cloudflare.check_hostname(domain, "name")
    if not isinstance(policies, list) or not policies:
        raise SaltInvocationError("policies: name at least one Access policy")
    settings = settings or {}
    unknown = sorted(set(settings) - set(outpost_cloudflare.APP_WRITABLE))
    if unknown:
        raise SaltInvocationError(f"settings: {unknown[0]!r} is not a setting outpost manages")
    fields = outpost_cloudflare.app_fields(
        api, app_name or domain, domain, policies, settings, predict
    )
    return api, fields


def plan_app(domain, policies, app_name=None, settings=None):
    """
    Say what ``write_app`` would change on the self-hosted Access application for ``domain``.

    domain
        The host name the application protects.

    policies
        Names of reusable Access policies, in order of precedence.

    app_name
        The name shown in Access. Default: the domain

    settings
        Further settings, compared only when given: ``session_duration``, ``allowed_idps``,
        ``auto_redirect_to_identity``, ``app_launcher_visible`` and the like. Default: none

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.plan_app hello.example.com policies='[hello-staff]'
    """
    api, fields = _app(domain, policies, app_name, settings, predict=True)
    return outpost_cloudflare.plan_app(api, fields)[0]


def write_app(domain, policies, app_name=None, settings=None):
    """
    Create or update the self-hosted Access application for ``domain``; settings outpost does
    not own are kept.

    domain
        The host name. Other parameters as ``plan_app``.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.write_app hello.example.com policies='[hello-staff]'
    """
    api, fields = _app(domain, policies, app_name, settings)
    return outpost_cloudflare.apply_app(api, fields)


def remove_app(domain, dry_run=False):
    """
    Delete the Access application for ``domain``.

    domain
        The host name.

    dry_run
        Only say what would be removed. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.remove_app hello.example.com
    """
    domain = outpost_cloudflare.check_hostname(domain, "name")
    return outpost_cloudflare.remove_app(_api(), domain, dry_run=bool(dry_run))


# -- WAF -------------------------------------------------------------------------------------


def plan_waf_rule(name, zone, expression, action="block", description=None, enabled=True):
    """
    Say what ``write_waf_rule`` would change on the custom rule with ref ``name`` in the zone's
    ``http_request_firewall_custom`` entrypoint ruleset.

    name
        The rule's ``ref``: its stable identity.

    zone
        The zone's id or name.

    expression
        The rule's expression, e.g. ``(http.host eq "hello.example.com" and ip.src.country eq
        "T1")``.

    action
        ``block``, ``managed_challenge``, ``challenge``, ``js_challenge``, ``log`` or ``skip``.
        Default: ``block``

    description
        Default: the name

    enabled
        Default: ``True``

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.plan_waf_rule hello-tor example.com \\
            expression='(http.host eq "hello.example.com" and ip.src.country eq "T1")'
    """
    fields = outpost_cloudflare.waf_fields(name, expression, action, description, enabled)
    return outpost_cloudflare.plan_waf(_api(), _zone(zone), fields)[0]


def write_waf_rule(name, zone, expression, action="block", description=None, enabled=True):
    """
    Add or update the custom rule ``name``; the zone's other rules are left as they are.

    name
        The rule's ``ref``. Other parameters as ``plan_waf_rule``.

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.write_waf_rule hello-tor example.com expression='...'
    """
    fields = outpost_cloudflare.waf_fields(name, expression, action, description, enabled)
    return outpost_cloudflare.apply_waf(_api(), _zone(zone), fields)


def remove_waf_rule(name, zone, dry_run=False):
    """
    Delete the custom rule ``name`` from the zone's entrypoint ruleset.

    name
        The rule's ``ref``.

    zone
        The zone's id or name.

    dry_run
        Only say what would be removed. Default: ``False``

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd cloudflare_zt.remove_waf_rule hello-tor example.com
    """
    return outpost_cloudflare.remove_waf(_api(), _zone(zone), name, dry_run=bool(dry_run))
