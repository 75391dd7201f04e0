{#- The app_health beacon watches every app outpost installs on this client; its settings come
    from pillar outpost:beacons:app_health. -#}
{%- from "outpost/map.jinja" import outpost with context %}
{%- set app_health = outpost.beacons.app_health %}

outpost-beacons-app-health-present:
  beacon.present:
    - name: app_health
    - save: true
    - interval: {{ app_health.interval }}
    - failures: {{ app_health.failures }}
    - heartbeat: {{ app_health.heartbeat }}
