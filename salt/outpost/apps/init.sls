{#- Every app this client's pillar names, at the release the pillar asks for. -#}
{%- from "outpost/map.jinja" import outpost, is_windows, python_path with context %}
{%- for app, settings in outpost.apps | dictsort if settings.get("version") %}
{%-   set version = settings.version %}

outpost-apps-{{ app }}-installed:
  shiv_app.installed:
    - name: {{ app }}
    - version: {{ version | yaml_dquote }}
    - source: {{ settings.get("source", outpost.artifacts ~ "/" ~ app ~ "/" ~ app ~ "-" ~ version ~ ".pyz") }}
    - source_hash: {{ settings.source_hash }}
    - python: '{{ python_path(settings.python) }}'
    - port: {{ settings.port }}
    - args: {{ settings.get("args", []) | json }}
    - env: {{ settings.get("env", {}) | json }}
    - health_timeout: {{ settings.get("health_timeout", outpost.health_timeout) }}
    - keep: {{ settings.get("keep", outpost.keep) }}
{%-   if settings.get("health_url") %}
    - health_url: {{ settings.health_url }}
{%-   endif %}
{%-   if settings.get("user") %}
    - user: {{ settings.user }}
{%-   endif %}
{%-   if is_windows %}
    - require:
      - sls: outpost.python
      - sls: outpost.winsw
{%-   endif %}
{%- endfor %}
