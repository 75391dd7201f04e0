# Settings of every client for the outpost formula (salt/outpost).
outpost:
  # Where apps, releases and pinned Pythons live on the client. Keep it short on Windows: the
  # deepest extracted file of an app must stay under 260 characters.
  root: 'C:\outpost'

  # Base of the default release source: <artifacts>/<app>/<app>-<version>.pyz
  artifacts: salt://releases

  # Releases to keep per app (the current and previous are always kept), and seconds a new
  # release has to answer its health check before the previous one is put back.
  keep: 3
  health_timeout: 30

  # Windows: official embeddable Python packages, one folder per version, from the artifact store.
  pythons:
    '3.11.9':
      source: salt://artifacts/python/python-3.11.9-embed-amd64.zip
      source_hash: sha256=<64 hex digits>

  # Windows: the WinSW service wrapper, pinned and hash-checked.
  winsw:
    source: salt://artifacts/winsw/WinSW-x64-2.12.0.exe
    source_hash: sha256=<64 hex digits>

  # Beacons that watch the apps and the connector (state outpost.beacons).
  beacons:
    app_health: {interval: 10, failures: 3, heartbeat: 300}
    tunnel_health: {interval: 10, failures: 3}
