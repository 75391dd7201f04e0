"""
outpost's logs as JSON lines, and Salt's authentication failures on outpost's security stream.

Salt loads this module on the master (``extension_modules/log_handlers``) when it sets up its
logging; see ``_utils/outpost_logs.py`` for the files and their settings.
"""

import logging

log = logging.getLogger(__name__)

__virtualname__ = "outpost_json"


def __virtual__():
    if __opts__.get("__role") != "master":
        return (False, "outpost_json log handler: it runs on the master only")
    return __virtualname__


def setup_handlers():
    """The handlers Salt adds to the root logger; ``False`` if outpost's library is missing."""
    try:
        import outpost_logs  # noqa: PLC0415 (found only once Salt's loader put utils on the path)
    except ImportError:
        log.warning("outpost_json: outpost_logs is not synced to the master's utils; no JSON logs")
        return False
    # Salt takes a generator as several handlers, any other value as one.
    return (handler for handler in outpost_logs.handlers(__opts__))
