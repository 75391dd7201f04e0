{#- Expose one client's app through Cloudflare, run on the master:

      salt-run state.orchestrate orch.expose pillar='{"expose": {...}}' [test=True]

    pillar expose: client, hostname, zone, port; optional tunnel (default outpost-<client>),
    access {emails, email_domains, groups, require_mfa}, waf {expression, action} and
    cloudflared: false to leave the client alone. The Cloudflare states run here with the
    master's API token; the client only gets its tunnel token, through its own pillar. -#}
{%- set expose = pillar["expose"] %}
{%- set client = expose["client"] %}
{%- set hostname = expose["hostname"] %}
{%- set tunnel = expose.get("tunnel", "outpost-" ~ client) %}
{%- set access = expose.get("access", {}) %}
{%- set policy = expose.get("policy", hostname ~ "-access") %}
{%- set waf = expose.get("waf") %}

outpost-orch-expose-tunnel:
  cloudflare_zt.tunnel_present:
    - name: {{ tunnel }}
    - client: {{ client }}

outpost-orch-expose-ingress:
  cloudflare_zt.ingress_managed:
    - name: {{ hostname }}
    - tunnel: {{ tunnel }}
    - rules:
      - hostname: {{ hostname }}
        service: http://127.0.0.1:{{ expose["port"] | int }}
    - require:
      - cloudflare_zt: outpost-orch-expose-tunnel

outpost-orch-expose-dns:
  cloudflare_zt.cname_present:
    - name: {{ hostname }}
    - zone: {{ expose["zone"] }}
    - tunnel: {{ tunnel }}
    - require:
      - cloudflare_zt: outpost-orch-expose-tunnel

outpost-orch-expose-policy:
  cloudflare_zt.access_policy_present:
    - name: {{ policy }}
    - emails: {{ access.get("emails", []) | json }}
    - email_domains: {{ access.get("email_domains", []) | json }}
    - groups: {{ access.get("groups", []) | json }}
    - require_mfa: {{ access.get("require_mfa", true) | json }}

outpost-orch-expose-app:
  cloudflare_zt.access_app_present:
    - name: {{ hostname }}
    - policies: [{{ policy | json }}]
    - require:
      - cloudflare_zt: outpost-orch-expose-policy
{%- if waf %}

outpost-orch-expose-waf:
  cloudflare_zt.waf_rule_present:
    - name: {{ waf.get("name", hostname | replace(".", "-")) }}
    - zone: {{ expose["zone"] }}
    - expression: {{ waf["expression"] | json }}
    - action: {{ waf.get("action", "block") }}
{%- endif %}
{%- if expose.get("cloudflared", true) %}

outpost-orch-expose-cloudflared:
  salt.state:
    - tgt: {{ client }}
    - sls: outpost.cloudflared
    - expect_minions: true
    - require:
      - cloudflare_zt: outpost-orch-expose-ingress
      - cloudflare_zt: outpost-orch-expose-dns
      - cloudflare_zt: outpost-orch-expose-app
{%- endif %}
