# Everything outpost keeps on a client: pinned Pythons, the Windows service wrapper, the apps.
include:
  - outpost.python
  - outpost.winsw
  - outpost.apps
  - outpost.cloudflared
  - outpost.beacons
