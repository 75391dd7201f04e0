{#- The Cloudflare Tunnel connector, when this client's pillar names a cloudflared version. The
    token stays in pillar (outpost:cloudflared:token): the state reads it there, so it is never
    rendered into this SLS or a job's arguments. Origins are checked against the ports the
    pillar gives the apps, so a dry run before the apps exist predicts the truth. -#}
{%- from "outpost/map.jinja" import outpost with context %}
{%- set cloudflared = outpost.cloudflared %}
{%- if cloudflared.get("version") %}
{%-   set ports = {} %}
{%-   for app, settings in outpost.apps | dictsort if settings.get("port") %}
{%-     do ports.update({app: settings.port}) %}
{%-   endfor %}
{%-   set source = cloudflared.get("source", cloudflared.artifacts ~ "/cloudflared-" ~ cloudflared.version) %}

outpost-cloudflared-installed:
  cloudflared.installed:
    - name: cloudflared
    - version: {{ cloudflared.version | json }}
    - source: {{ source | json }}
    - source_hash: {{ cloudflared.source_hash | json }}

outpost-cloudflared-configured:
  cloudflared.configured:
    - name: cloudflared
    - ingress: {{ cloudflared.ingress | json }}
    - metrics: {{ cloudflared.metrics | json }}
    - apps: {{ ports | json }}
{%-   if cloudflared.get("tunnel") %}
    - tunnel: {{ cloudflared.tunnel | json }}
{%-   endif %}

outpost-cloudflared-running:
  cloudflared.running:
    - name: cloudflared
    - token_pillar: outpost:cloudflared:token
    - require:
      - cloudflared: outpost-cloudflared-installed
      - cloudflared: outpost-cloudflared-configured
{%- endif %}
