{#- Every app this client's pillar names, at the release the pillar asks for. Every value goes in
    through | json, so a pillar value can never add YAML of its own. -#}
{%- from "outpost/map.jinja" import outpost, is_windows, python_path with context %}
{#- A rollout's state run (pillar outpost_rollout: app, version) must make that release live: a
    client whose pillar names another release fails, and that app is left as it is. #}
{%- set rollout = salt["pillar.get"]("outpost_rollout", {}) %}
{%- set behind = none %}
{%- if rollout is mapping and rollout.get("app") %}
{%-   if (outpost.apps.get(rollout.app) or {}).get("version") != rollout.get("version") %}
{%-     set behind = rollout.app %}

{{ ("outpost-apps-" ~ rollout.app ~ "-rollout") | json }}:
  test.configurable_test_state:
    - name: {{ rollout.app | json }}
    - result: false
    - changes: false
    {#- test.fail_without_changes drops the comment under test=True; the reason must stay. #}
    - allow_test_mode_failure: true
    - comment: {{ ("outpost:apps:" ~ rollout.app ~ ": the pillar does not name " ~ rollout.get("version") ~ ", the release being rolled out; nothing was changed") | json }}
{%-   endif %}
{%- endif %}
{%- for app, settings in outpost.apps | dictsort if settings.get("version") and app != behind %}
{%-   set version = settings.version %}
{%-   set missing = ["source_hash", "python", "port"] | reject("in", settings) | list %}
{%-   if missing %}

{#- The registry names the release; the pillar tree must give the app's settings. #}
{{ ("outpost-apps-" ~ app ~ "-installed") | json }}:
  test.configurable_test_state:
    - name: {{ app | json }}
    - result: false
    - changes: false
    - allow_test_mode_failure: true
    - comment: {{ ("outpost:apps:" ~ app ~ ": no " ~ missing | join(", ") ~ " in pillar; nothing was changed") | json }}
{%-   else %}
{%-   set source = settings.get("source", outpost.artifacts ~ "/" ~ app ~ "/" ~ app ~ "-" ~ version ~ ".pyz") %}

{{ ("outpost-apps-" ~ app ~ "-installed") | json }}:
  shiv_app.installed:
    - name: {{ app | json }}
    - version: {{ version | json }}
    - source: {{ source | json }}
    - source_hash: {{ settings.source_hash | json }}
    - python: {{ python_path(settings.python) | json }}
    - port: {{ settings.port | json }}
    - args: {{ settings.get("args", []) | json }}
    - env: {{ settings.get("env", {}) | json }}
    - health_timeout: {{ settings.get("health_timeout", outpost.health_timeout) | json }}
    - keep: {{ settings.get("keep", outpost.keep) | json }}
{%-   if settings.get("health_url") %}
    - health_url: {{ settings.health_url | json }}
{%-   endif %}
{%-   if settings.get("user") %}
    - user: {{ settings.user | json }}
{%-   endif %}
{%-   if is_windows %}
    - require:
      - sls: outpost.python
      - sls: outpost.winsw
{%-   endif %}
{%-   endif %}
{%- endfor %}
