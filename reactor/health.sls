{#- A client's app_health beacon saw an app change state, or sent its heartbeat. The runner
    decides what to do, one remediation at a time. -#}
outpost-reactor-health-event:
  runner.outpost_health.handle:
    - tag: {{ tag | json }}
    - data: {{ data | json }}
