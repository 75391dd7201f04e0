{#- Expose one client's app through Cloudflare, run on the master:

      salt-run state.orchestrate orch.expose pillar='{"expose": {...}}' [test=True]

    pillar expose: client, hostname, zone, port; optional tunnel (default outpost-<client>),
    access {emails, email_domains, groups, require_mfa}, waf {expression, action} and
    cloudflared: false to leave the client alone. The Cloudflare states run here with the
    master's API token; the client only gets its tunnel token, through its own pillar. -#}
{%- set expose = pillar["expose"] %}
{%- set client = expose["client"] %}
{#- A minion id, checked here: the client becomes a target, and "*" would be every client. -#}
{%- if client is not string or client is not match("[A-Za-z0-9][A-Za-z0-9._-]{0,62}(?![\\s\\S])") %}
{{-   raise("expose:client: " ~ (client | json) ~ " is not a minion id") }}
{%- endif %}
{%- set hostname = expose["hostname"] %}
{%- set tunnel = expose.get("tunnel", "outpost-" ~ client) %}
{%- set access = expose.get("access", {}) %}
{%- set policy = expose.get("policy", hostname ~ "-access") %}
{%- set waf = expose.get("waf") %}

outpost-orch-expose-tunnel:
  cloudflare_zt.tunnel_present:
    - name: {{ tunnel | json }}
    - client: {{ client | json }}

outpost-orch-expose-ingress:
  cloudflare_zt.ingress_managed:
    - name: {{ hostname | json }}
    - tunnel: {{ tunnel | json }}
    - rules:
      - hostname: {{ hostname | json }}
        service: http://127.0.0.1:{{ expose["port"] | int }}
    - require:
      - cloudflare_zt: outpost-orch-expose-tunnel

outpost-orch-expose-dns:
  cloudflare_zt.cname_present:
    - name: {{ hostname | json }}
    - zone: {{ expose["zone"] | json }}
    - tunnel: {{ tunnel | json }}
    - require:
      - cloudflare_zt: outpost-orch-expose-tunnel

outpost-orch-expose-policy:
  cloudflare_zt.access_policy_present:
    - name: {{ policy | json }}
    - emails: {{ access.get("emails", []) | json }}
    - email_domains: {{ access.get("email_domains", []) | json }}
    - groups: {{ access.get("groups", []) | json }}
    - require_mfa: {{ access.get("require_mfa", true) | json }}

outpost-orch-expose-app:
  cloudflare_zt.access_app_present:
    - name: {{ hostname | json }}
    - policies: [{{ policy | json }}]
    - require:
      - cloudflare_zt: outpost-orch-expose-policy
{%- if waf %}

outpost-orch-expose-waf:
  cloudflare_zt.waf_rule_present:
    - name: {{ waf.get("name", hostname | replace(".", "-")) | json }}
    - zone: {{ expose["zone"] | json }}
    - expression: {{ waf["expression"] | json }}
    - action: {{ waf.get("action", "block") | json }}
{%- endif %}
{%- if expose.get("cloudflared", true) %}

outpost-orch-expose-cloudflared:
  salt.state:
    - tgt: [{{ client | json }}]
    - tgt_type: list
    - sls: outpost.cloudflared
    - expect_minions: true
    - require:
      - cloudflare_zt: outpost-orch-expose-ingress
      - cloudflare_zt: outpost-orch-expose-dns
      - cloudflare_zt: outpost-orch-expose-app
{%- endif %}
