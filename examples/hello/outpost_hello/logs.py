"""JSON lines on stdout: one object per record, so a log shipper needs no parser of its own."""

import datetime
import json
import logging
import sys

# Request fields the app passes through ``extra``; they appear only on records that carry them.
REQUEST_FIELDS = ("method", "path", "status")


class JsonLineFormatter(logging.Formatter):
    def format(self, record):
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for field in REQUEST_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure():
    """Send every logger, waitress's included, to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
