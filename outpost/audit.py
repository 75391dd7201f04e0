"""
``outpost audit``: what an auditor runs against the master's audit trail.

The trail's format and checks live in ``_utils/outpost_audit.py``, the library the master's
returner writes with; this module finds it (the repository's ``_utils``, or the master's synced
``extension_modules/utils``) so both sides always agree.
"""

import importlib.util
import pathlib

from outpost.errors import BadArgument, OutpostError

REPO_UTILS = pathlib.Path(__file__).resolve().parent.parent / "_utils"
MASTER_UTILS = pathlib.Path("/var/cache/salt/master/extmods/utils")
DEFAULT_TRAIL = "/var/cache/salt/master/outpost/audit-trail.jsonl"
FORMATS = ("text", "csv", "html")


def trail_library(utils_dir=None):
    """The ``outpost_audit`` module: from ``utils_dir``, the repository, or the master."""
    for folder in [utils_dir] if utils_dir else [REPO_UTILS, MASTER_UTILS]:
        path = pathlib.Path(folder) / "outpost_audit.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("outpost_audit", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    where = utils_dir or f"{REPO_UTILS} or {MASTER_UTILS}"
    raise OutpostError(f"--utils: no outpost_audit.py in {where}; run salt-run saltutil.sync_all")


def _records(library, trail):
    if not pathlib.Path(trail).is_file():
        raise BadArgument(f"--trail: {trail} is not a file")
    try:
        return library.Trail(trail).records()
    except library.TrailUnavailable as err:
        raise OutpostError(str(err)) from err


def verify_trail(trail, expect_head=None, utils_dir=None):
    """Returns the verdict: ok, count, head, problems."""
    library = trail_library(utils_dir)
    try:
        return library.verify(_records(library, trail), expect_head=expect_head)
    except library.BadTrail as err:
        raise BadArgument(f"--{str(err).replace('_', '-', 1)}") from err


def report_trail(trail, fmt="text", since=None, until=None, client=None, app=None, utils_dir=None):
    """The report as a string in ``fmt``."""
    if fmt not in FORMATS:
        raise BadArgument(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    library = trail_library(utils_dir)
    try:
        chosen = library.select(
            _records(library, trail), since=since, until=until, client=client, app=app
        )
    except library.BadTrail as err:
        raise BadArgument(f"--{err}") from err
    scope = [f"{name} {value}" for name, value in (("client", client), ("app", app)) if value]
    if since or until:
        scope.append(f"from {since or 'the start'} to {until or 'now'}")
    title = "outpost audit report" + (f" ({', '.join(scope)})" if scope else "")
    return library.render(chosen, fmt, title=title)
