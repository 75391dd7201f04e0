"""
The audit trail for the master's returner and runner: see ``outpost/trail.py``.

The code lives once, in the installed ``outpost`` package (the master installs it with its
master-side dependencies), so that ``outpost audit`` checks the trail with code from the package
only, never with a copy synced into ``extension_modules`` that operators can change, and the
returner writes with the very same functions.
"""

from outpost.trail import *  # noqa: F403 (this module is the package's trail, under Salt's name)
