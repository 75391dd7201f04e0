"""The WSGI application: a health check and a page naming what this release ships."""

import importlib.resources
import json
import logging
import time

import outpost_hello

APP_NAME = "hello"
STARTED = time.monotonic()

log = logging.getLogger(__name__)


def data_files():
    """Names of the data files shipped in this release, so a test can tell releases apart."""
    folder = importlib.resources.files(outpost_hello) / "data"
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".txt"))


def health():
    # Read at request time, so a test can flip the flag on a running app.
    healthy = outpost_hello.HEALTHY and not _past_its_time(outpost_hello.UNHEALTHY_AFTER)
    body = {
        "status": "ok" if healthy else "failing",
        "app": APP_NAME,
        "version": outpost_hello.__version__,
    }
    status = "200 OK" if healthy else "503 Service Unavailable"
    return status, "application/json", json.dumps(body)


def _past_its_time(seconds):
    return seconds is not None and time.monotonic() - STARTED > seconds


def index():
    lines = [f"outpost hello {outpost_hello.__version__}"]
    names = data_files()
    if names:
        lines.append("data files: " + ", ".join(names))
    return "200 OK", "text/plain; charset=utf-8", "\n".join(lines) + "\n"


ROUTES = {"/": index, "/healthz": health}


def respond(method, path):
    """Pick the response to one request: status line, content type, body text."""
    route = ROUTES.get(path)
    if route is None:
        return "404 Not Found", "text/plain; charset=utf-8", "not found\n"
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", "text/plain; charset=utf-8", "method not allowed\n"
    return route()


def application(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO") or "/"
    status, content_type, text = respond(method, path)
    body = text.encode("utf-8")

    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if status.startswith("405"):
        headers.append(("Allow", "GET, HEAD"))
    start_response(status, headers)

    code = int(status[:3])
    log.info("%s %s %s", method, path, code, extra={"method": method, "path": path, "status": code})
    return [] if method == "HEAD" else [body]
