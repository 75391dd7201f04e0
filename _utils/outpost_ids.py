"""
Minion ids as outpost accepts them from untrusted places: event tags and event data.

A minion chooses its own event tags and data, so a client named there is checked before the
master acts on it: one plain name (no glob, list, regex or compound characters), and every Salt
call aimed at it targets it with ``tgt_type="list"``.
"""

import re

from salt.exceptions import SaltInvocationError

# A letter or digit, then letters, digits, dots, dashes and underscores: what DNS and Windows
# host names allow. None of Salt's targeting characters (* ? [ ] , @ : | ! spaces) is allowed.
MINION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def is_minion_id(value):
    """True for one plain minion id."""
    return isinstance(value, str) and MINION_ID.fullmatch(value) is not None


def check_minion_id(value, field="client"):
    """Return ``value`` if it is one plain minion id; otherwise refuse it, naming ``field``."""
    if not is_minion_id(value):
        raise SaltInvocationError(f"{field}: {value!r} is not one plain minion id")
    return value
