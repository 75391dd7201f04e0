# The pillar tree of a site's clients. The master's ext_pillars add the rest per client:
# outpost_registry the desired release of each app (version, source, source_hash),
# outpost_vault the secrets behind `vault:` references, outpost_cloudflare the tunnel token.
base:
  '*':
    - outpost.client
  # Windows clients: where outpost lives, the pinned Pythons and the service wrapper.
  'os_family:Windows':
    - match: grain
    - outpost.windows
  # The clients that run hello; the master's outpost:apps:hello:clients names the same ones.
  'client-*':
    - outpost.apps.hello
    # The tunnel connector, once orch.expose has made each client's tunnel (its token comes
    # from there): a client given it before that fails its highstate on the missing token.
    # - outpost.cloudflared
