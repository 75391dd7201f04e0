# Every client gets the outpost formula; what it installs comes from its pillar.
base:
  '*':
    - outpost
