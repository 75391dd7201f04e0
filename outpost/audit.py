"""
``outpost audit``: what an auditor runs against the master's audit trail.

The trail's format and checks are ``outpost.trail``, from this installed package only: the master's
returner writes with the same module (``_utils/outpost_audit.py`` re-exports it), and nothing is
ever loaded from ``extension_modules`` or another folder operators control.
"""

import pathlib

from outpost import trail as library
from outpost.errors import BadArgument, OutpostError

DEFAULT_TRAIL = "/var/cache/salt/master/outpost/audit-trail.jsonl"
FORMATS = ("text", "csv", "html")


def _records(trail):
    if not pathlib.Path(trail).is_file():
        raise BadArgument(f"--trail: {trail} is not a file")
    try:
        return library.Trail(trail).records()
    except library.TrailUnavailable as err:
        raise OutpostError(str(err)) from err


def verify_trail(trail, expect_head=None):
    """Returns the verdict: ok, count, head, problems."""
    try:
        return library.verify(_records(trail), expect_head=expect_head)
    except library.BadTrail as err:
        raise BadArgument(f"--{str(err).replace('_', '-', 1)}") from err


def report_trail(trail, fmt="text", since=None, until=None, client=None, app=None):
    """``(verdict, report)``: the chain's verdict first, then the report in ``fmt``, which
    carries a TAMPERED banner when the chain does not verify."""
    if fmt not in FORMATS:
        raise BadArgument(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    records = _records(trail)
    verdict = library.verify(records)
    try:
        chosen = library.select(records, since=since, until=until, client=client, app=app)
    except library.BadTrail as err:
        raise BadArgument(f"--{err}") from err
    scope = [f"{name} {value}" for name, value in (("client", client), ("app", app)) if value]
    if since or until:
        scope.append(f"from {since or 'the start'} to {until or 'now'}")
    title = "outpost audit report" + (f" ({', '.join(scope)})" if scope else "")
    return verdict, library.render(chosen, fmt, title=title, problems=verdict["problems"])
