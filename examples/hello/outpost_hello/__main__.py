"""Serve the app with waitress on 127.0.0.1, on the port from ``--port`` or ``PORT``."""

import argparse
import logging
import os
import signal
import sys

import waitress

import outpost_hello
from outpost_hello import logs
from outpost_hello.app import application

# Only the local reverse proxy or health checker should reach the app.
HOST = "127.0.0.1"

log = logging.getLogger("outpost_hello")


def port_number(text):
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 1-65535")
    return port


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="outpost-hello", description=__doc__)
    parser.add_argument("--port", type=port_number, help="TCP port to listen on (default: $PORT)")
    args = parser.parse_args(argv)

    if args.port is None:
        if not os.environ.get("PORT"):
            parser.error("no port: pass --port or set PORT")
        try:
            args.port = port_number(os.environ["PORT"])
        except argparse.ArgumentTypeError as err:
            parser.error(f"PORT: {err}")
    return args


def stop_on_sigterm():
    """Service managers stop with SIGTERM; waitress shuts down cleanly on SystemExit."""

    def handle(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handle)


def main(argv=None):
    args = parse_args(argv)
    logs.configure()

    try:
        server = waitress.create_server(
            application, host=HOST, port=args.port, ident="outpost-hello"
        )
    except OSError as err:
        log.error("cannot listen on %s:%s: %s", HOST, args.port, err)
        return 1

    stop_on_sigterm()
    log.info("hello %s listening on http://%s:%s", outpost_hello.__version__, HOST, args.port)
    server.run()

    log.info("hello %s stopped", outpost_hello.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
