{#- cloudflared on this client for a remotely managed tunnel: the pinned binary, a config.yml
    without ingress (Cloudflare holds it), and the connector running on the token the master
    stored for this client (pillar outpost:cloudflared:token, from the outpost_cloudflare
    ext_pillar). Pillar outpost:cloudflared: version, source, source_hash, metrics. -#}
{%- from "outpost/map.jinja" import outpost with context %}
{%- set cloudflared = outpost.get("cloudflared", {}) %}

outpost-cloudflared-binary:
  cloudflared.installed:
    - name: cloudflared
    - version: {{ cloudflared.version | yaml_dquote }}
    - source: {{ cloudflared.source }}
    - source_hash: {{ cloudflared.source_hash }}

outpost-cloudflared-config:
  cloudflared.configured:
    - name: cloudflared
    - ingress: []
    - metrics: {{ cloudflared.get("metrics", "127.0.0.1:20241") }}

outpost-cloudflared-service:
  cloudflared.running:
    - name: cloudflared
    - token_pillar: outpost:cloudflared:token
    - require:
      - cloudflared: outpost-cloudflared-binary
      - cloudflared: outpost-cloudflared-config
    - watch:
      - cloudflared: outpost-cloudflared-config
