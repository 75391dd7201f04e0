{#- A client (re)connected: converge it to the releases the registry wants it to run. Every master
    hears the start; the runner claims it, so one of them converges the client. The runner checks
    that the data's id is the tag's (a minion can fire any start event). -#}
outpost-reactor-minion-start-converge:
  runner.outpost_release.converge:
    - client: {{ data.get("id") | json }}
    - tag: {{ tag | json }}
