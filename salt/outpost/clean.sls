# Removes every app this client's pillar names; pinned Pythons and WinSW stay for other uses.
include:
  - outpost.apps.clean
