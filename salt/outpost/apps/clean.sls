{#- Removes every app this client's pillar names: service, releases and settings. -#}
{%- from "outpost/map.jinja" import outpost with context %}
{%- for app in outpost.apps | sort %}

{{ ("outpost-apps-clean-" ~ app ~ "-absent") | json }}:
  shiv_app.absent:
    - name: {{ app | json }}
{%- endfor %}
