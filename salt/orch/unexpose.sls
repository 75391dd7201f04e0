{#- Undo orch.expose for one client's app, in reverse order, with the same pillar:

      salt-run state.orchestrate orch.unexpose pillar='{"expose": {...}}' [test=True]

    The client's connector stops first; the tunnel goes last, and only when no other app's
    rule is left in its ingress (pillar expose:keep_tunnel: true keeps it regardless). Records
    and rules of other apps are never touched. -#}
{%- set expose = pillar["expose"] %}
{%- set client = expose["client"] %}
{#- A minion id, checked here: the client becomes a target, and "*" would be every client. -#}
{%- if client is not string or client is not match("[A-Za-z0-9][A-Za-z0-9._-]{0,62}(?![\\s\\S])") %}
{{-   raise("expose:client: " ~ (client | json) ~ " is not a minion id") }}
{%- endif %}
{%- set hostname = expose["hostname"] %}
{%- set tunnel = expose.get("tunnel", "outpost-" ~ client) %}
{%- set policy = expose.get("policy", hostname ~ "-access") %}
{%- set waf = expose.get("waf") %}
{%- set others = [] %}
{%- if salt["cloudflare_zt.get_tunnel"](tunnel) %}
{%-   for rule in salt["cloudflare_zt.get_ingress"](tunnel)["ingress"] %}
{%-     if rule.get("hostname") not in (none, "", "*", hostname) %}
{%-       do others.append(rule["hostname"]) %}
{%-     endif %}
{%-   endfor %}
{%- endif %}
{%- set remove_tunnel = not others and not expose.get("keep_tunnel", false) %}
{%- if expose.get("cloudflared", true) and remove_tunnel %}

outpost-orch-unexpose-cloudflared:
  salt.function:
    - name: cloudflared.remove_service
    - tgt: [{{ client | json }}]
    - tgt_type: list
    - expect_minions: true
    - require_in:
      - cloudflare_zt: outpost-orch-unexpose-tunnel
{%- endif %}
{%- if waf %}

outpost-orch-unexpose-waf:
  cloudflare_zt.waf_rule_absent:
    - name: {{ waf.get("name", hostname | replace(".", "-")) | json }}
    - zone: {{ expose["zone"] | json }}
{%- endif %}

outpost-orch-unexpose-app:
  cloudflare_zt.access_app_absent:
    - name: {{ hostname | json }}

outpost-orch-unexpose-policy:
  cloudflare_zt.access_policy_absent:
    - name: {{ policy | json }}
    - require:
      - cloudflare_zt: outpost-orch-unexpose-app

outpost-orch-unexpose-dns:
  cloudflare_zt.cname_absent:
    - name: {{ hostname | json }}
    - zone: {{ expose["zone"] | json }}
    - tunnel: {{ tunnel | json }}

outpost-orch-unexpose-ingress:
  cloudflare_zt.ingress_absent:
    - name: {{ hostname | json }}
    - tunnel: {{ tunnel | json }}
    - hostnames: [{{ hostname | json }}]
{%- if remove_tunnel %}

outpost-orch-unexpose-tunnel:
  cloudflare_zt.tunnel_absent:
    - name: {{ tunnel | json }}
    - client: {{ client | json }}
    - require:
      - cloudflare_zt: outpost-orch-unexpose-dns
      - cloudflare_zt: outpost-orch-unexpose-ingress
{%- endif %}
