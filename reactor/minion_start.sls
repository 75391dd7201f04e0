{#- A client (re)connected: converge it to the releases the registry wants it to run. -#}
outpost-reactor-minion-start-converge:
  local.state.apply:
    - tgt: {{ data["id"] | json }}
    - args:
      - mods: outpost.apps
      - queue: true
