{#- The app_health beacon watches every app outpost installs on this client, the tunnel_health
    beacon its cloudflared connector (it sends nothing where there is none); their settings come
    from pillar outpost:beacons, each through | json so a value stays one value. -#}
{%- from "outpost/map.jinja" import outpost with context %}
{%- set app_health = outpost.beacons.app_health %}
{%- set tunnel_health = outpost.beacons.tunnel_health %}

outpost-beacons-app-health-present:
  beacon.present:
    - name: app_health
    - save: true
    - interval: {{ app_health.interval | json }}
    - failures: {{ app_health.failures | json }}
    - heartbeat: {{ app_health.heartbeat | json }}

outpost-beacons-tunnel-health-present:
  beacon.present:
    - name: tunnel_health
    - save: true
    - interval: {{ tunnel_health.interval | json }}
    - failures: {{ tunnel_health.failures | json }}
