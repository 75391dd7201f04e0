{#- CI announced a release through salt-api's /hook/outpost/release. The runner checks the
    HMAC, the timestamp, the signature and the schema before anything else happens. -#}
outpost-reactor-release-received:
  runner.outpost_release.receive:
    - body: {{ data.get("body", "") | json }}
    - headers: {{ data.get("headers", {}) | json }}
