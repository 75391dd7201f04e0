"""A small WSGI app that outpost deploys in its tests and its demo."""

__version__ = "1.0.0"

# Tests and the demo build a deliberately broken release by setting this to False.
HEALTHY = True

# Tests build a release that passes its deploy gate and fails later by setting this to a number
# of seconds: /healthz turns unhealthy that long after the process started.
UNHEALTHY_AFTER = None
