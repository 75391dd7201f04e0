"""
Cloudflare Zero Trust from the master, through Cloudflare's official SDK: a remotely managed
tunnel, its ingress, a proxied DNS CNAME to it, an Access application with its policies, and a
WAF custom rule.

Each kind of object has a ``plan_*`` (read what is there, compare only the fields the caller
sets, say what would change) and an ``apply_*`` (make it so, then return the plan it carried
out). Server-side fields and defaults never take part in a comparison, so a second run plans
nothing; a manual edit of a field outpost sets shows up in the plan and is written back.

Settings, in the master configuration::

    outpost:
      cloudflare:
        api_token: {vault: {mount: secret, path: outpost/cloudflare, key: api_token}}
        account_id: 0123456789abcdef0123456789abcdef
        zones: {example.com: fedcba9876543210fedcba9876543210}
        token_store: {mount: secret, path: outpost/cloudflared}   # tunnel tokens, per client
        max_pages: 200            # a listing longer than this stops with an error
        base_url: null            # the API's address; tests point it at Prism
"""

import logging
import re

from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_cloudflared
import outpost_vault

try:
    import cloudflare

    HAS_CLOUDFLARE = True
except ImportError:  # pragma: no cover - the master's install pins it
    HAS_CLOUDFLARE = False

log = logging.getLogger(__name__)

TUNNEL_DOMAIN = "cfargotunnel.com"
WAF_PHASE = "http_request_firewall_custom"
PER_PAGE = 100
MAX_PAGES = 200
WRITE_ATTEMPTS = 3
CATCH_ALL = {"hostname": "*", "service": "http_status:404"}
WAF_ACTIONS = ("block", "challenge", "js_challenge", "managed_challenge", "log", "skip")
HEX32 = re.compile(r"[0-9a-f]{32}")
REF = re.compile(r"[A-Za-z0-9_-]{1,64}")
IDP_GROUPS = {
    # provider: (rule key, the field naming the group)
    "okta": ("okta", "name"),
    "azure": ("azureAD", "id"),
    "google": ("gsuite", "email"),
    "github": ("github-organization", "name"),
    "saml": ("saml", "attribute_value"),
}
APP_WRITABLE = (
    "allowed_idps",
    "app_launcher_visible",
    "auto_redirect_to_identity",
    "custom_deny_message",
    "custom_deny_url",
    "enable_binding_cookie",
    "http_only_cookie_attribute",
    "logo_url",
    "options_preflight_bypass",
    "same_site_cookie_attribute",
    "session_duration",
    "skip_interstitial",
    "tags",
)
# Codes Cloudflare answers when what is being created is there already.
EXISTS_CODES = {81053, 81057, 1013, 12130}


class CloudflareError(CommandExecutionError):
    """A Cloudflare API call failed; ``codes`` holds Cloudflare's error codes."""

    def __init__(self, message, status=None, codes=()):
        super().__init__(message)
        self.status = status
        self.codes = set(codes)

    @property
    def already_exists(self):
        return bool(self.codes & EXISTS_CODES)


class ConcurrentChange(CloudflareError):
    """Someone else kept changing the object between outpost's read and its write."""


# -- settings and secrets --------------------------------------------------------------------


def settings(opts):
    found = (opts.get("outpost") or {}).get("cloudflare")
    if not isinstance(found, dict):
        raise SaltInvocationError("outpost:cloudflare: not set in the master configuration")
    return found


def account_id(opts):
    value = str(settings(opts).get("account_id") or "")
    if not HEX32.fullmatch(value):
        raise SaltInvocationError("outpost:cloudflare:account_id: expected 32 hex digits")
    return value


def zone_id(opts, zone):
    """A zone's id, from its id or its name in ``outpost:cloudflare:zones``."""
    zone = str(zone or "").lower().rstrip(".")
    if HEX32.fullmatch(zone):
        return zone
    zones = settings(opts).get("zones") or {}
    if zone not in zones:
        known = ", ".join(sorted(zones)) or "none"
        raise SaltInvocationError(
            f"zone: {zone!r} is neither a zone id nor named in outpost:cloudflare:zones "
            f"(known: {known})"
        )
    return str(zones[zone])


def read_secret(opts, value, where):
    """The one place the API token is read: a plain string, or a Vault reference
    ``{vault: {mount, path, key}}`` looked up through outpost_vault."""
    if outpost_vault.is_reference(value):
        return outpost_vault.resolve(opts, value)
    if not isinstance(value, str) or not value:
        raise SaltInvocationError(f"{where}: not set")
    return value


def api_token(opts):
    return read_secret(opts, settings(opts).get("api_token"), "outpost:cloudflare:api_token")


class TunnelTokens:
    """Tunnel tokens kept for their clients in Vault (``outpost:vault``), at
    ``<mount>/<path>/<minion id>`` (``outpost:cloudflare:token_store``, default
    ``secret`` and ``outpost/cloudflared``) as ``{token, tunnel_id}``. The client gets its own
    through the ``outpost_cloudflare`` ext_pillar."""

    def __init__(self, opts):
        store = settings(opts).get("token_store") or {}
        self.mount = store.get("mount", "secret")
        self.prefix = str(store.get("path", "outpost/cloudflared")).strip("/")
        self.vault = outpost_vault.client_from_opts(opts)

    def _path(self, minion_id):
        if not re.fullmatch(r"[A-Za-z0-9._-]+", str(minion_id)):
            raise SaltInvocationError(f"client: {minion_id!r} is not a minion id")
        return f"{self.prefix}/{minion_id}"

    def read(self, minion_id):
        try:
            return self.vault.read_secret(self.mount, self._path(minion_id)).get("token")
        except outpost_vault.SecretNotFound:
            return None

    def write(self, minion_id, tunnel, token):
        self.vault.write_secret(
            self.mount, self._path(minion_id), {"token": token, "tunnel_id": tunnel}
        )

    def delete(self, minion_id):
        self.vault.delete_secret(self.mount, self._path(minion_id))


# -- the API ---------------------------------------------------------------------------------


def plain(value):
    """SDK models (and the dicts some answers come back as) as plain JSON-like data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "to_dict"):
        return value.to_dict(mode="json")
    return value


class API:
    """The SDK client and the account, with every call's failure turned into CloudflareError."""

    def __init__(self, opts):
        if not HAS_CLOUDFLARE:
            raise CommandExecutionError("the cloudflare SDK is not installed on the master")
        found = settings(opts)
        self.account = account_id(opts)
        self.opts = opts
        arguments = {"api_token": api_token(opts), "max_retries": 2, "timeout": 30.0}
        if found.get("base_url"):
            arguments["base_url"] = found["base_url"]
        self.sdk = cloudflare.Cloudflare(**arguments)
        self.max_pages = int(found.get("max_pages", MAX_PAGES))

    def call(self, what, function, *args, **kwargs):
        log.debug("Cloudflare: %s", what)
        try:
            return function(*args, **kwargs)
        except cloudflare.APIStatusError as err:
            raise _status_error(what, err) from None
        except cloudflare.APIConnectionError as err:
            raise CloudflareError(f"{what}: Cloudflare's API did not answer ({err})") from None

    def list_all(self, what, function, **params):
        """Every item of a paged listing. Stops at the reported page count (or the first short
        page when none is reported), refuses to go past ``max_pages``, and refuses a page that
        repeats items already read: an endpoint handing out the same page forever is an error,
        never an endless loop or a listing with holes."""
        items, seen = [], set()
        for page in range(1, self.max_pages + 1):
            answer = self.call(
                f"{what} (page {page})", function, page=page, per_page=PER_PAGE, **params
            )
            batch = [plain(item) for item in (answer.result or [])]
            ids = {item.get("id") for item in batch}
            if batch and ids <= seen:
                raise CloudflareError(f"{what}: page {page} repeats items already read; stopped")
            seen |= ids
            items.extend(batch)
            if _last_page(plain(answer.result_info) or {}, page, len(batch)):
                return items
        raise CloudflareError(f"{what}: more than {self.max_pages} pages; stopped")


def _last_page(info, page, count):
    if not count:
        return True
    if info.get("total_pages") is not None:
        return page >= int(info["total_pages"])
    if info.get("total_count") is not None:
        return page * PER_PAGE >= int(info["total_count"])
    return count < PER_PAGE


def _status_error(what, err):
    body = err.body if isinstance(err.body, dict) else {}
    errors = body.get("errors") or []
    codes = [e.get("code") for e in errors if isinstance(e, dict)]
    text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    if not text and body.get("validation"):
        # A validating proxy in front of the API (Prism in outpost's tests) says what it refused.
        text = "; ".join(str(v.get("message")) for v in body["validation"] if isinstance(v, dict))
    return CloudflareError(
        f"{what}: HTTP {err.status_code}: {text or 'no error details'}",
        status=err.status_code,
        codes=codes,
    )


# -- comparing -------------------------------------------------------------------------------


def same(current, wanted):
    """Whether ``current`` (as Cloudflare has it) says what ``wanted`` says. Keys the caller
    did not set, inside mappings at any depth, are the server's business and ignored."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return False
        return all(same(current.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list):
        current = current or []
        if not isinstance(current, list) or len(current) != len(wanted):
            return False
        return all(same(old, new) for old, new in zip(current, wanted, strict=True))
    return current == wanted


def field_changes(current, wanted):
    current = current or {}
    return {
        key: {"old": current.get(key), "new": value}
        for key, value in wanted.items()
        if not same(current.get(key), value)
    }


def check_hostname(hostname, where="hostname"):
    name = str(hostname or "").lower().rstrip(".")
    if not outpost_cloudflared.HOSTNAME.fullmatch(name) or "." not in name:
        raise SaltInvocationError(f"{where}: {hostname!r} is not a fully qualified host name")
    return name


def _only_given(**fields):
    return {key: value for key, value in fields.items() if value is not None}


# -- tunnels ---------------------------------------------------------------------------------


def find_tunnel(api, name):
    tunnels = api.list_all(
        f"list tunnels named {name}",
        api.sdk.zero_trust.tunnels.cloudflared.list,
        account_id=api.account,
        name=name,
        is_deleted=False,
    )
    live = [t for t in tunnels if t.get("name") == name and not t.get("deleted_at")]
    if len(live) > 1:
        raise CloudflareError(f"tunnel {name}: {len(live)} tunnels have that name; expected one")
    return live[0] if live else None


def tunnel_id(api, name):
    tunnel = find_tunnel(api, name)
    if tunnel is None:
        raise CloudflareError(f"tunnel {name}: no such tunnel")
    return tunnel["id"]


def _check_remote(tunnel):
    if tunnel.get("config_src") != "cloudflare" and not tunnel.get("remote_config"):
        raise CloudflareError(
            f"tunnel {tunnel['name']}: it is locally managed (its ingress lives in a config.yml); "
            "outpost manages remotely managed tunnels only"
        )


def plan_tunnel(api, name, client=None):
    tunnel = find_tunnel(api, name)
    plan = {}
    if tunnel is None:
        plan["tunnel"] = {"old": None, "new": name}
        if client:
            plan["token"] = {"old": None, "new": f"stored for {client}"}
        return plan, None
    _check_remote(tunnel)
    stored = TunnelTokens(api.opts).read(client) if client else None
    if client and _token_for(api, tunnel["id"]) != stored:
        # A token is only ever named, never shown: a rotated one is "a different token".
        plan["token"] = {"old": stored and "a different token", "new": f"stored for {client}"}
    return plan, tunnel


def _token_for(api, tunnel):
    return api.call(
        f"fetch the token of tunnel {tunnel}",
        api.sdk.zero_trust.tunnels.cloudflared.token.get,
        tunnel,
        account_id=api.account,
    )


def apply_tunnel(api, name, client=None):
    plan, tunnel = plan_tunnel(api, name, client)
    if tunnel is None:
        tunnel = _create(
            api,
            f"create tunnel {name}",
            lambda: api.sdk.zero_trust.tunnels.cloudflared.create(
                account_id=api.account, name=name, config_src="cloudflare"
            ),
            lambda: find_tunnel(api, name),
        )
        log.info("created Cloudflare tunnel %s (%s)", name, tunnel["id"])
    if "token" in plan:
        TunnelTokens(api.opts).write(client, tunnel["id"], _token_for(api, tunnel["id"]))
        log.info("stored the token of tunnel %s for %s", name, client)
    return plan, tunnel


def _create(api, what, create, reread):
    """Create, or, when Cloudflare says it exists already (someone was quicker), read it back."""
    try:
        return plain(api.call(what, create))
    except CloudflareError as err:
        if not err.already_exists:
            raise
        log.info("%s: it exists already; reading it back", what)
        found = reread()
        if found is None:
            raise
        return found


def remove_tunnel(api, name, client=None, dry_run=False):
    tunnel = find_tunnel(api, name)
    tokens = TunnelTokens(api.opts) if client else None
    plan = {}
    if tunnel is not None:
        plan["tunnel"] = {"old": name, "new": None}
    if tokens and tokens.read(client) is not None:
        plan["token"] = {"old": f"stored for {client}", "new": None}
    if dry_run or not plan:
        return plan
    if tunnel is not None:
        # A tunnel with live connectors cannot be deleted (code 1022): cut them off first.
        api.call(
            f"clean up the connections of tunnel {name}",
            api.sdk.zero_trust.tunnels.cloudflared.connections.delete,
            tunnel["id"],
            account_id=api.account,
        )
        api.call(
            f"delete tunnel {name}",
            api.sdk.zero_trust.tunnels.cloudflared.delete,
            tunnel["id"],
            account_id=api.account,
        )
        log.info("deleted Cloudflare tunnel %s (%s)", name, tunnel["id"])
    if "token" in plan:
        tokens.delete(client)
    return plan


# -- ingress ---------------------------------------------------------------------------------


def _rule_key(rule):
    return (str(rule.get("hostname", "")).lower(), rule.get("path"))


def _is_catch_all(rule):
    return rule.get("hostname") in (None, "", "*") and not rule.get("path")


def check_rules(rules):
    """The rules outpost owns on the tunnel, each with a hostname (no catch-all: that one is
    shared by every app on the tunnel)."""
    if not isinstance(rules, list) or not rules:
        raise SaltInvocationError("rules: expected a list of ingress rules")
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not rule.get("hostname") or rule["hostname"] == "*":
            raise SaltInvocationError(f"rules[{index}]: every rule needs its own hostname")
    checked = outpost_cloudflared.validate_ingress([*rules, {"service": "http_status:404"}])
    return checked[:-1]


def read_ingress(api, tunnel):
    answer = (
        plain(
            api.call(
                f"read the configuration of tunnel {tunnel}",
                api.sdk.zero_trust.tunnels.cloudflared.configurations.get,
                tunnel,
                account_id=api.account,
            )
        )
        or {}
    )
    config = answer.get("config") or {}
    return answer.get("version"), config


def merge_ingress(current, rules=(), remove=()):
    """The ingress list with ``rules`` put in (in place where a rule for the same hostname and
    path is there; else before the catch-all) and the hostnames in ``remove`` taken out. Every
    other rule stays as it was and where it was."""
    ingress = [dict(rule) for rule in current]
    catch_all = ingress.pop() if ingress and _is_catch_all(ingress[-1]) else dict(CATCH_ALL)
    removed = {str(host).lower() for host in remove}
    ingress = [rule for rule in ingress if _rule_key(rule)[0] not in removed]
    for rule in rules:
        index = next((i for i, r in enumerate(ingress) if _rule_key(r) == _rule_key(rule)), None)
        if index is None:
            ingress.append(dict(rule))
        else:
            ingress[index] = dict(ingress[index], **rule)
    return [*ingress, catch_all]


def ingress_changes(current, merged):
    before = {_rule_key(r): r for r in current if not _is_catch_all(r)}
    after = {_rule_key(r): r for r in merged if not _is_catch_all(r)}
    changes = {}
    for key in sorted(set(before) | set(after), key=lambda k: (k[0], k[1] or "")):
        old, new = before.get(key), after.get(key)
        if old is None or new is None or not same(old, new):
            label = key[0] + (key[1] or "")
            changes[label] = {"old": old, "new": new}
    if not current or not _is_catch_all(current[-1]):
        changes["catch-all"] = {"old": None, "new": merged[-1]}
    return changes


def plan_ingress(api, tunnel_name, rules=(), remove=(), predict=False):
    """The changes to the tunnel's ingress. ``predict``: a tunnel not created yet (in a dry
    run of everything) has an empty configuration."""
    if predict and find_tunnel(api, tunnel_name) is None:
        return ingress_changes([], merge_ingress([], rules)) if rules else {}, None
    tunnel = tunnel_id(api, tunnel_name)
    version, config = read_ingress(api, tunnel)
    current = config.get("ingress") or []
    merged = merge_ingress(current, rules, remove)
    return ingress_changes(current, merged), (tunnel, version, config, merged)


def apply_ingress(api, tunnel_name, rules=(), remove=()):
    """Read, merge, write. The version read is compared with the one there just before the
    write: when someone else wrote in between, their configuration is merged with again, so
    their change is kept rather than overwritten (the API has no conditional write)."""
    changes, (tunnel, version, config, merged) = plan_ingress(api, tunnel_name, rules, remove)
    if not changes:
        return changes
    for _attempt in range(WRITE_ATTEMPTS):
        latest, config_now = read_ingress(api, tunnel)
        if latest != version:
            log.info(
                "tunnel %s: its configuration changed (version %s to %s) while outpost merged; "
                "merging again",
                tunnel_name,
                version,
                latest,
            )
            version, config = latest, config_now
            merged = merge_ingress(config.get("ingress") or [], rules, remove)
            continue
        written = (
            plain(
                api.call(
                    f"write the configuration of tunnel {tunnel_name}",
                    api.sdk.zero_trust.tunnels.cloudflared.configurations.update,
                    tunnel,
                    account_id=api.account,
                    config=dict(config, ingress=merged),
                )
            )
            or {}
        )
        if version is not None and written.get("version") not in (None, version + 1):
            log.warning(
                "tunnel %s: another write landed beside outpost's (version %s, now %s)",
                tunnel_name,
                version,
                written.get("version"),
            )
        log.info("wrote the ingress of tunnel %s: %s", tunnel_name, ", ".join(sorted(changes)))
        return changes
    raise ConcurrentChange(
        f"tunnel {tunnel_name}: its configuration changed on every one of {WRITE_ATTEMPTS} "
        "attempts to write it; nothing was written"
    )


# -- DNS -------------------------------------------------------------------------------------


def tunnel_target(tunnel):
    return f"{tunnel}.{TUNNEL_DOMAIN}"


def find_cname(api, zone, name):
    records = api.list_all(
        f"list the CNAME records of zone {zone}",
        api.sdk.dns.records.list,
        zone_id=zone,
        type="CNAME",
    )
    found = [r for r in records if str(r.get("name", "")).lower().rstrip(".") == name]
    if len(found) > 1:
        raise CloudflareError(f"{name}: {len(found)} CNAME records have that name; expected one")
    return found[0] if found else None


def cname_fields(target, proxied=True, ttl=None, comment=None):
    return _only_given(content=target, proxied=bool(proxied), ttl=ttl, comment=comment)


def plan_cname(api, zone, name, fields):
    current = find_cname(api, zone, name)
    if current is None:
        return {"record": {"old": None, "new": dict(fields, name=name, type="CNAME")}}, None
    return field_changes(current, fields), current


def apply_cname(api, zone, name, fields):
    changes, current = plan_cname(api, zone, name, fields)
    if not changes:
        return changes
    body = {"name": name, "type": "CNAME", "ttl": 1, **fields}
    if current is None:
        try:
            api.call(f"create CNAME {name}", api.sdk.dns.records.create, zone_id=zone, **body)
            log.info("created CNAME %s -> %s", name, fields["content"])
            return changes
        except CloudflareError as err:
            if not err.already_exists:
                raise
            current = find_cname(api, zone, name)
            if current is None:
                raise CloudflareError(
                    f"{name}: another record (A or AAAA) has that name; outpost does not "
                    f"replace it. Cloudflare said: {err}"
                ) from None
            log.info("CNAME %s was created meanwhile; updating it in place", name)
            changes = field_changes(current, fields)
            if not changes:
                return changes
    body["ttl"] = fields.get("ttl", current.get("ttl", 1))
    api.call(
        f"update CNAME {name}", api.sdk.dns.records.update, current["id"], zone_id=zone, **body
    )
    log.info("updated CNAME %s in place: %s", name, ", ".join(sorted(changes)))
    return changes


def remove_cname(api, zone, name, target="", dry_run=False):
    """Delete the CNAME ``name`` if it points at ``target`` (a ``.suffix`` matches any host
    under it; empty: whatever it points at). Returns the changes and why one was left."""
    target = target or ""
    current = find_cname(api, zone, name)
    if current is None:
        return {}, None
    content = str(current.get("content", ""))
    ours = content == target or (target.startswith(".") and content.endswith(target))
    if target and not ours:
        return {}, f"CNAME {name} points at {current.get('content')}, not {target}: left alone"
    if not dry_run:
        api.call(f"delete CNAME {name}", api.sdk.dns.records.delete, current["id"], zone_id=zone)
        log.info("deleted CNAME %s", name)
    return {"record": {"old": current.get("content"), "new": None}}, None


# -- Access policies -------------------------------------------------------------------------

_DONE = {"create": "created", "update": "updated", "delete": "deleted"}


def _access_plan(kind, current, fields):
    """The changes writing ``fields`` would make to ``current`` (None: there is no such Access
    ``kind`` yet), and ``current``."""
    if current is None:
        return {kind: {"old": None, "new": fields}}, None
    return field_changes(current, fields), current


def _access_write(api, verb, what, function, *ids, changes=None, **body):
    """Create, update or delete an Access policy or application in the account, and log it
    (for an update, with the fields that changed)."""
    api.call(f"{verb} {what}", function, *ids, account_id=api.account, **body)
    if changes:
        log.info("%s %s: %s", _DONE[verb], what, ", ".join(sorted(changes)))
    else:
        log.info("%s %s", _DONE[verb], what)


def _access_remove(api, kind, label, current, resource, dry_run):
    """Delete ``current``, the Access ``kind`` (policy, application) named ``label``, unless
    there is none or this is a dry run; the changes either way."""
    if current is None:
        return {}
    if not dry_run:
        _access_write(api, "delete", f"Access {kind} {label}", resource.delete, current["id"])
    return {kind: {"old": label, "new": None}}


def policy_rules(emails=None, email_domains=None, groups=None, include=None):
    """Access ``include`` rules: each email, each email domain, each identity provider group
    (``{provider: okta|azure|google|github|saml, idp: <IdP id>, name: <group>}``)."""
    rules = [{"email": {"email": str(e).lower()}} for e in emails or []]
    rules += [{"email_domain": {"domain": str(d).lower()}} for d in email_domains or []]
    for index, group in enumerate(groups or []):
        where = f"groups[{index}]"
        if not isinstance(group, dict) or not group.get("idp") or not group.get("name"):
            raise SaltInvocationError(f"{where}: expected provider, idp and name")
        provider = group.get("provider")
        if provider not in IDP_GROUPS:
            known = ", ".join(sorted(IDP_GROUPS))
            raise SaltInvocationError(f"{where}: provider {provider!r} is not one of {known}")
        key, field = IDP_GROUPS[provider]
        rule = {field: group["name"], "identity_provider_id": group["idp"]}
        if provider == "saml":
            rule["attribute_name"] = group.get("attribute", "groups")
        rules.append({key: rule})
    rules += list(include or [])
    if not rules:
        raise SaltInvocationError("allow: name at least one email, email domain or group")
    return rules


def policy_fields(name, include, require_mfa=True, require=None, exclude=None, session=None):
    """What outpost owns on a policy: who is let in, what they must also satisfy (MFA), and
    whom it keeps out. Everyone a policy does not let in is denied by Access."""
    required = list(require or [])
    if require_mfa:
        required.append({"auth_method": {"auth_method": "mfa"}})
    fields = {
        "name": name,
        "decision": "allow",
        "include": include,
        "require": required,
        "exclude": list(exclude or []),
    }
    if session:
        fields["session_duration"] = session
    return fields


def find_policy(api, name):
    policies = api.list_all(
        "list Access policies", api.sdk.zero_trust.access.policies.list, account_id=api.account
    )
    found = [p for p in policies if p.get("name") == name]
    if len(found) > 1:
        raise CloudflareError(f"Access policy {name}: {len(found)} policies have that name")
    return found[0] if found else None


def plan_policy(api, fields):
    return _access_plan("policy", find_policy(api, fields["name"]), fields)


def apply_policy(api, fields):
    changes, current = plan_policy(api, fields)
    if not changes:
        return changes
    policies = api.sdk.zero_trust.access.policies
    what = f"Access policy {fields['name']}"
    if current is None:
        _access_write(api, "create", what, policies.create, **fields)
    else:
        _access_write(
            api, "update", what, policies.update, current["id"], changes=changes, **fields
        )
    return changes


def remove_policy(api, name, dry_run=False):
    policies = api.sdk.zero_trust.access.policies
    return _access_remove(api, "policy", name, find_policy(api, name), policies, dry_run)


# -- Access applications ---------------------------------------------------------------------


def find_app(api, domain):
    apps = api.list_all(
        "list Access applications",
        api.sdk.zero_trust.access.applications.list,
        account_id=api.account,
    )
    found = [a for a in apps if str(a.get("domain", "")).lower() == domain]
    if len(found) > 1:
        raise CloudflareError(f"Access application for {domain}: {len(found)} have that domain")
    return found[0] if found else None


def app_fields(api, name, domain, policies, extra=None, predict=False):
    """The application as outpost writes it. ``predict``: a policy not created yet (in a dry
    run of everything) is named by a placeholder id."""
    links = []
    for precedence, policy_name in enumerate(policies, start=1):
        policy = find_policy(api, policy_name)
        if policy is None and predict:
            policy = {"id": f"<id of Access policy {policy_name}>"}
        if policy is None:
            raise CloudflareError(f"policies[{precedence - 1}]: no Access policy {policy_name}")
        links.append({"id": policy["id"], "precedence": precedence})
    return {
        "type": "self_hosted",
        "name": name,
        "domain": domain,
        "policies": links,
        **(extra or {}),
    }


def _app_view(app):
    """An application as compared: its policies as id and precedence only."""
    if app is None:
        return None
    view = dict(app)
    view["policies"] = [
        {"id": p.get("id"), "precedence": p.get("precedence")} for p in app.get("policies") or []
    ]
    return view


def plan_app(api, fields):
    return _access_plan("application", _app_view(find_app(api, fields["domain"])), fields)


def apply_app(api, fields):
    changes, current = plan_app(api, fields)
    if not changes:
        return changes
    apps = api.sdk.zero_trust.access.applications
    what = f"Access application {fields['domain']}"
    if current is None:
        try:
            _access_write(api, "create", what, apps.create, **fields)
            return changes
        except CloudflareError as err:
            current = _app_view(find_app(api, fields["domain"])) if err.already_exists else None
            if current is None:
                raise
            log.info("Access application %s was created meanwhile; updating it", fields["domain"])
    # PUT replaces the whole application: keep the settings outpost does not own.
    body = {key: current[key] for key in APP_WRITABLE if current.get(key) is not None}
    body.update(fields)
    _access_write(api, "update", what, apps.update, current["id"], changes=changes, **body)
    return changes


def remove_app(api, domain, dry_run=False):
    apps = api.sdk.zero_trust.access.applications
    return _access_remove(api, "application", domain, find_app(api, domain), apps, dry_run)


# -- WAF custom rules ------------------------------------------------------------------------


def waf_fields(ref, expression, action="block", description=None, enabled=True):
    if not REF.fullmatch(str(ref)):
        raise SaltInvocationError(f"name: {ref!r} must be 1 to 64 letters, digits, _ or -")
    if action not in WAF_ACTIONS:
        raise SaltInvocationError(f"action: {action!r} is not one of {', '.join(WAF_ACTIONS)}")
    if not isinstance(expression, str) or not expression.strip():
        raise SaltInvocationError("expression: a rule expression is required")
    return {
        "ref": str(ref),
        "expression": expression,
        "action": action,
        "description": description if description is not None else str(ref),
        "enabled": bool(enabled),
    }


def read_entrypoint(api, zone):
    try:
        return plain(
            api.call(
                f"read zone {zone}'s {WAF_PHASE} ruleset",
                api.sdk.rulesets.phases.get,
                WAF_PHASE,
                zone_id=zone,
            )
        )
    except CloudflareError as err:
        if err.status == 404:
            return None
        raise


def _find_rule(ruleset, ref):
    rules = [r for r in (ruleset or {}).get("rules") or [] if r.get("ref") == ref]
    return rules[0] if rules else None


def plan_waf(api, zone, fields):
    ruleset = read_entrypoint(api, zone)
    current = _find_rule(ruleset, fields["ref"])
    if current is None:
        return {"rule": {"old": None, "new": fields}}, ruleset, None
    return field_changes(current, fields), ruleset, current


def apply_waf(api, zone, fields):
    changes, ruleset, current = plan_waf(api, zone, fields)
    if not changes:
        return changes
    if ruleset is None:
        # Created empty, then the rule added like any other: one way of writing a rule.
        ruleset = plain(
            api.call(
                f"create zone {zone}'s {WAF_PHASE} ruleset",
                api.sdk.rulesets.phases.update,
                WAF_PHASE,
                zone_id=zone,
                rules=[],
            )
        )
    if current is None:
        api.call(
            f"add WAF rule {fields['ref']}",
            api.sdk.rulesets.rules.create,
            ruleset["id"],
            zone_id=zone,
            **fields,
        )
    else:
        api.call(
            f"update WAF rule {fields['ref']}",
            api.sdk.rulesets.rules.edit,
            current["id"],
            ruleset_id=ruleset["id"],
            zone_id=zone,
            **fields,
        )
    log.info("WAF rule %s in zone %s: %s", fields["ref"], zone, ", ".join(sorted(changes)))
    return changes


def remove_waf(api, zone, ref, dry_run=False):
    ruleset = read_entrypoint(api, zone)
    current = _find_rule(ruleset, ref)
    if current is None:
        return {}
    if not dry_run:
        api.call(
            f"delete WAF rule {ref}",
            api.sdk.rulesets.rules.delete,
            current["id"],
            ruleset_id=ruleset["id"],
            zone_id=zone,
        )
        log.info("deleted WAF rule %s from zone %s", ref, zone)
    return {"rule": {"old": ref, "new": None}}


def verify_token(api):
    answer = plain(api.call("verify the API token", api.sdk.user.tokens.verify)) or {}
    return {"status": answer.get("status"), "id": answer.get("id")}
