# The example app's settings. Its release (version, source, source_hash) comes from the release
# registry through the outpost_registry ext_pillar: a client gets the app once a rollout names
# it, and nothing here has to change for a new release.
outpost:
  apps:
    hello:
      # A key of outpost:pythons (Windows), or an absolute path.
      python: "{{ '3.11.9' if grains['os_family'] == 'Windows' else '/usr/bin/python3.11' }}"
      port: 8080
      # Extra arguments after the .pyz; {port} becomes the port.
      args: []
      # The app's environment; stored readable by the service account only, never shown in
      # a state's return.
      env:
        LOG_LEVEL: info
        # A secret: the master's outpost_vault ext_pillar puts the value from Vault here, for
        # this client only ({minion_id} is the client's id). Mount and path apart: no /v1/, no
        # data/ segment.
        DATABASE_PASSWORD:
          vault: {mount: secret, path: "clients/{minion_id}/hello", key: db_password}
      # Optional: the health check URL and the service account.
      health_url: http://127.0.0.1:{port}/healthz
      # user: outpost-hello
