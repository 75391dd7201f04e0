"""
Expose an app through Cloudflare from the master: a remotely managed tunnel, its ingress, a
proxied CNAME, an Access application and its policy, and a WAF custom rule.

These states call Cloudflare's API with the master's credentials, so they run on the master:
in an orchestration (``salt-run state.orchestrate orch.expose``; see ``salt/orch/expose.sls``),
never on a client. Each compares only the fields it sets, so a second run changes nothing and a
manual edit of one of them is written back and reported; ``test=True`` returns the changes it
would make.

.. code-block:: yaml

    hello-tunnel:
      cloudflare_zt.tunnel_present:
        - name: outpost-client-1
        - client: client-1             # its token is stored for this minion's pillar

    hello-ingress:
      cloudflare_zt.ingress_managed:
        - tunnel: outpost-client-1
        - rules:
          - hostname: hello.example.com
            service: http://127.0.0.1:8080

    hello-dns:
      cloudflare_zt.cname_present:
        - name: hello.example.com
        - zone: example.com
        - tunnel: outpost-client-1

    hello-staff:
      cloudflare_zt.access_policy_present:
        - emails: [ops@example.com]
        - groups: [{provider: okta, idp: <IdP id>, name: Engineering}]
        - require_mfa: true

    hello-app:
      cloudflare_zt.access_app_present:
        - name: hello.example.com
        - policies: [hello-staff]

    hello-waf:
      cloudflare_zt.waf_rule_present:
        - zone: example.com
        - expression: (http.host eq "hello.example.com" and not ip.src.country in {"NL" "BE"})
        - action: block
"""

from salt.exceptions import SaltException

__virtualname__ = "cloudflare_zt"


def __virtual__():
    if "cloudflare_zt.plan_tunnel" in __salt__:
        return __virtualname__
    return (False, "cloudflare_zt state: the cloudflare_zt execution module is not loaded")


def _converge(name, noop, would, done, plan, apply):
    """The shape every state here has: plan, predict in test mode, apply, plan again."""
    ret = {"name": name, "changes": {}, "result": True, "comment": noop}
    try:
        changes = plan()
        if not changes:
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=would)
            return ret

        apply()
        left = plan()
        if left:
            raise SaltException(f"still different after writing: {', '.join(sorted(left))}")
    except SaltException as err:
        ret.update(result=False, changes={}, comment=f"{name}: {err}")
        return ret

    ret.update(changes=changes, comment=done)
    return ret


def tunnel_present(name, client=None):
    """
    Keep the remotely managed tunnel ``name``, and its token stored for ``client``.

    name
        The tunnel's name.

    client
        The minion id whose cloudflared runs it: the token is stored where that client's pillar
        ``outpost:cloudflared:token`` comes from, and reported only as "stored". Default: none
    """
    return _converge(
        name,
        f"tunnel {name} is present",
        f"would create tunnel {name} or store its token",
        f"tunnel {name} is present",
        lambda: __salt__["cloudflare_zt.plan_tunnel"](name, client=client),
        lambda: __salt__["cloudflare_zt.write_tunnel"](name, client=client),
    )


def tunnel_absent(name, client=None):
    """
    Delete the tunnel ``name`` (cutting off its connectors) and the token stored for ``client``.

    name
        The tunnel's name.

    client
        The minion id the token was stored for. Default: none
    """

    def plan():
        return __salt__["cloudflare_zt.remove_tunnel"](name, client=client, dry_run=True)

    return _converge(
        name,
        f"tunnel {name} is absent",
        f"would delete tunnel {name}",
        f"deleted tunnel {name}",
        plan,
        lambda: __salt__["cloudflare_zt.remove_tunnel"](name, client=client),
    )


def ingress_managed(name, tunnel, rules):
    """
    Keep ``rules`` in the tunnel's ingress, beside every other app's rules on it.

    name
        The state's ID.

    tunnel
        The tunnel's name.

    rules
        The rules this app owns: each ``hostname``, ``service`` (``http://127.0.0.1:<port>``,
        as the client sees it), optional ``path`` and ``originRequest``. Rules are matched by
        hostname and path; a catch-all (``http_status:404``) stays last.
    """
    return _converge(
        name,
        f"the ingress of tunnel {tunnel} has these rules",
        f"would write the ingress of tunnel {tunnel}",
        f"wrote the ingress of tunnel {tunnel}",
        lambda: __salt__["cloudflare_zt.plan_ingress"](tunnel, rules=rules),
        lambda: __salt__["cloudflare_zt.write_ingress"](tunnel, rules=rules),
    )


def ingress_absent(name, tunnel, hostnames):
    """
    Take the rules for ``hostnames`` out of the tunnel's ingress; other rules stay.

    name
        The state's ID.

    tunnel
        The tunnel's name; a tunnel that is gone has no rules left to take out.

    hostnames
        The host names whose rules go.
    """

    def plan():
        if __salt__["cloudflare_zt.get_tunnel"](tunnel) is None:
            return {}
        return __salt__["cloudflare_zt.plan_ingress"](tunnel, remove=hostnames)

    return _converge(
        name,
        f"the ingress of tunnel {tunnel} has no rules for {', '.join(hostnames)}",
        f"would take {', '.join(hostnames)} out of the ingress of tunnel {tunnel}",
        f"took {', '.join(hostnames)} out of the ingress of tunnel {tunnel}",
        plan,
        lambda: __salt__["cloudflare_zt.write_ingress"](tunnel, remove=hostnames),
    )


def cname_present(name, zone, tunnel=None, target=None, proxied=True, ttl=None, comment=None):
    """
    Keep one proxied CNAME ``name`` pointing at the tunnel (``<id>.cfargotunnel.com``), updated
    in place when it differs.

    name
        The host name.

    zone
        The zone's id, or its name in ``outpost:cloudflare:zones``.

    tunnel
        The tunnel's name (or give ``target``).

    target
        The record's content instead of a tunnel. Default: none

    proxied
        Default: ``True``

    ttl
        Compared only when given. Default: none

    comment
        Compared only when given. Default: none
    """
    record = dict(locals())  # every argument, passed on to plan and write as it came
    return _converge(
        name,
        f"CNAME {name} is as requested",
        f"would write CNAME {name}",
        f"wrote CNAME {name}",
        lambda: __salt__["cloudflare_zt.plan_cname"](**record),
        lambda: __salt__["cloudflare_zt.write_cname"](**record),
    )


def cname_absent(name, zone, tunnel=None, target=None):
    """
    Delete the CNAME ``name`` when it points at the tunnel (or ``target``); a record pointing
    elsewhere is someone else's and is left, with a comment saying so.

    name
        The host name.

    zone
        The zone's id or name.

    tunnel
        Only a record pointing at this tunnel is deleted. Default: none

    target
        Only a record with this content is deleted. Default: none
    """
    ret = _converge(
        name,
        f"CNAME {name} is absent",
        f"would delete CNAME {name}",
        f"deleted CNAME {name}",
        lambda: __salt__["cloudflare_zt.remove_cname"](
            name, zone, tunnel=tunnel, target=target, dry_run=True
        )["changes"],
        lambda: __salt__["cloudflare_zt.remove_cname"](name, zone, tunnel=tunnel, target=target),
    )
    if ret["result"] and not ret["changes"]:
        note = __salt__["cloudflare_zt.remove_cname"](
            name, zone, tunnel=tunnel, target=target, dry_run=True
        )["note"]
        ret["comment"] = note or ret["comment"]
    return ret


def access_policy_present(
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
    Keep the reusable Access policy ``name``: allow the emails, email domains and identity
    provider groups named, require MFA, and (Access's own rule) deny everyone else. Its
    include, require and exclude lists are outpost's: a rule added by hand is taken out.

    name
        The policy's name.

    emails, email_domains
        Who is let in. Default: none

    groups
        Identity provider groups let in: ``{provider: okta|azure|google|github|saml, idp:
        <identity provider id>, name: <group>}``. Default: none

    require_mfa
        Default: ``True``

    include, require, exclude
        Further Access rules, as Cloudflare writes them. Default: none

    session_duration
        Compared only when given. Default: none
    """
    policy = dict(locals())  # every argument, passed on to plan and write as it came
    return _converge(
        name,
        f"Access policy {name} is as requested",
        f"would write Access policy {name}",
        f"wrote Access policy {name}",
        lambda: __salt__["cloudflare_zt.plan_policy"](**policy),
        lambda: __salt__["cloudflare_zt.write_policy"](**policy),
    )


def access_policy_absent(name):
    """
    Delete the reusable Access policy ``name`` (remove the applications using it first).

    name
        The policy's name.
    """
    return _converge(
        name,
        f"Access policy {name} is absent",
        f"would delete Access policy {name}",
        f"deleted Access policy {name}",
        lambda: __salt__["cloudflare_zt.remove_policy"](name, dry_run=True),
        lambda: __salt__["cloudflare_zt.remove_policy"](name),
    )


def access_app_present(name, policies, app_name=None, settings=None):
    """
    Keep a self-hosted Access application for the host name ``name`` with ``policies``, in
    that order of precedence.

    name
        The host name it protects.

    policies
        Names of reusable Access policies.

    app_name
        The name shown in Access. Default: the host name

    settings
        Further settings, compared only when given (``session_duration``, ``allowed_idps``,
        ``auto_redirect_to_identity``, ...). Default: none
    """
    app = {"app_name": app_name, "settings": settings}
    return _converge(
        name,
        f"Access application {name} is as requested",
        f"would write Access application {name}",
        f"wrote Access application {name}",
        lambda: __salt__["cloudflare_zt.plan_app"](name, policies, **app),
        lambda: __salt__["cloudflare_zt.write_app"](name, policies, **app),
    )


def access_app_absent(name):
    """
    Delete the Access application for the host name ``name``.

    name
        The host name.
    """
    return _converge(
        name,
        f"Access application {name} is absent",
        f"would delete Access application {name}",
        f"deleted Access application {name}",
        lambda: __salt__["cloudflare_zt.remove_app"](name, dry_run=True),
        lambda: __salt__["cloudflare_zt.remove_app"](name),
    )


def waf_rule_present(name, zone, expression, action="block", description=None, enabled=True):
    """
    Keep the custom rule with ref ``name`` in the zone's ``http_request_firewall_custom``
    entrypoint ruleset (created when the zone has none); the zone's other rules stay.

    name
        The rule's ``ref``.

    zone
        The zone's id or name.

    expression
        The rule's expression.

    action
        Default: ``block``

    description
        Default: the name

    enabled
        Default: ``True``
    """
    rule = {"expression": expression, "action": action, "description": description}
    rule["enabled"] = enabled
    return _converge(
        name,
        f"WAF rule {name} is as requested",
        f"would write WAF rule {name}",
        f"wrote WAF rule {name}",
        lambda: __salt__["cloudflare_zt.plan_waf_rule"](name, zone, **rule),
        lambda: __salt__["cloudflare_zt.write_waf_rule"](name, zone, **rule),
    )


def waf_rule_absent(name, zone):
    """
    Delete the custom rule with ref ``name`` from the zone's entrypoint ruleset.

    name
        The rule's ``ref``.

    zone
        The zone's id or name.
    """
    return _converge(
        name,
        f"WAF rule {name} is absent",
        f"would delete WAF rule {name}",
        f"deleted WAF rule {name}",
        lambda: __salt__["cloudflare_zt.remove_waf_rule"](name, zone, dry_run=True),
        lambda: __salt__["cloudflare_zt.remove_waf_rule"](name, zone),
    )
