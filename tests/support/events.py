"""Remediation decisions as the master's event bus carries them, and polling for them."""

import time


def decisions(event_listener, salt_master, minion, target, start):
    """The decisions (``restart``, ``rollback``, ``recover``, ``throttled``...) the master
    published for ``target`` on ``minion`` since ``start``, oldest first: the last part of each
    ``outpost/remediation/<minion>/<target>/<decision>`` tag."""
    events = event_listener.get_events(
        [(salt_master.id, f"outpost/remediation/{minion}/{target}/*")], after_time=start
    )
    return [event.tag.rsplit("/", 1)[1] for event in sorted(events, key=lambda e: e.stamp)]


def wait_for(predicate, timeout=60):
    """Whether ``predicate()`` comes true within ``timeout`` seconds, asked twice a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False
