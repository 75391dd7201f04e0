# Settings of every client for the outpost formula (salt/outpost); the OS family's defaults
# (salt/outpost/osfamilymap.yaml) give the root: C:\outpost on Windows, /opt/outpost elsewhere.
outpost:
  # Base of the default release source: <artifacts>/<app>/<app>-<version>.pyz
  artifacts: salt://releases

  # Releases to keep per app (the current and previous are always kept), and seconds a new
  # release has to answer its health check before the previous one is put back.
  keep: 3
  health_timeout: 30

  # Beacons that watch the apps and the connector (state outpost.beacons).
  beacons:
    app_health: {interval: 10, failures: 3, heartbeat: 300}
    tunnel_health: {interval: 10, failures: 3}
