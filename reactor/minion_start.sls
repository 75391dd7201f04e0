{#- A client (re)connected: converge it to the releases the registry wants it to run. Every master
    hears the start; the runner claims it, so one of them converges the client. -#}
outpost-reactor-minion-start-converge:
  runner.outpost_release.converge:
    - client: {{ data["id"] | json }}
