{#- The health runner found a client silent (no heartbeat): if it is a Windows host reached over
    WinRM, the runner restarts its salt-minion service, at most once per interval. -#}
outpost-reactor-client-missing-recover:
  runner.outpost_winrm.handle_missing:
    - tag: {{ tag | json }}
    - data: {{ data | json }}
