# The Cloudflare Tunnel connector (state outpost.cloudflared); a client without this has none.
# Its token comes from the outpost_cloudflare ext_pillar (the tunnel cloudflare_zt created for
# this client), never from this tree.
outpost:
  cloudflared:
    version: 2025.8.1
    source_hash: sha256=<64 hex digits>
    # Default source: salt://artifacts/cloudflared/cloudflared-<version>
    # source: salt://artifacts/cloudflared/cloudflared-2025.8.1-windows-amd64.exe
    metrics: 127.0.0.1:20241
    # A locally managed tunnel names its UUID and its ingress; a remotely managed one takes
    # its ingress from Cloudflare and leaves both out.
    # tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
    # ingress:
    #   - {hostname: hello.example.com, app: hello}
    #   - service: http_status:404
