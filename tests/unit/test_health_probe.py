"""
The health probe against small real servers that misbehave the way a wrong or broken process on
the app's port does. The beacon runs it in the minion's main loop: it must never hang or raise.
"""

import contextlib
import socket
import threading
import time

import pytest
from salt.exceptions import SaltInvocationError

import outpost_cloudflared
import outpost_health


def serve(reply):
    """A one-thread TCP server; ``reply(connection)`` answers each connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def loop():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(4096)
                with contextlib.suppress(OSError):
                    reply(connection)

    threading.Thread(target=loop, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"


@pytest.fixture
def server():
    listeners = []

    def start(reply):
        listener, url = serve(reply)
        listeners.append(listener)
        return url

    yield start
    for listener in listeners:
        listener.close()


def http_answer(body, status="200 OK"):
    def reply(connection):
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        connection.sendall(head.encode() + body.encode())

    return reply


def test_an_answer_dripping_in_is_cut_at_the_timeout(server):
    """One byte a second kept probe(timeout=2) busy for 22 s: the timeout was per read."""

    def drip(connection):
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 60:
            connection.sendall(bytes([byte]))
            time.sleep(0.25)

    url = server(drip)
    started = time.monotonic()

    healthy, reason = outpost_health.probe(url, timeout=1.0)

    assert time.monotonic() - started < 3
    assert not healthy
    assert "no complete answer within 1s" in reason


def drip_after(head, pause):
    def reply(connection):
        connection.sendall(head)
        for _ in range(40):
            connection.sendall(b"x")
            time.sleep(pause)

    return reply


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 40\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Slow: ",
    ],
    ids=["body-with-length", "body-until-close", "headers"],
)
def test_a_cut_answer_never_counts_as_complete(server, head):
    """Once the headers said Connection: close, http.client let go of the socket and the timer
    cut nothing: a dripping body held the probe 10 s; a body cut short passed as healthy."""
    started = time.monotonic()

    healthy, reason = outpost_health.probe(server(drip_after(head, 0.1)), timeout=1.0)

    assert time.monotonic() - started < 3
    assert (healthy, reason.endswith("no complete answer within 1s")) == (False, True)


@pytest.mark.parametrize(
    "url", ["http:///healthz", "http://:8080/healthz", "http://127.0.0.1:99999/healthz"]
)
def test_a_url_without_host_or_port_is_unhealthy_not_an_exception(url):
    assert outpost_health.probe(url, timeout=1.0)[0] is False
    with pytest.raises(SaltInvocationError, match=r"^url: "):
        outpost_health.validate_url(url)


@pytest.mark.parametrize(
    "reply",
    [
        lambda connection: connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n"),
        lambda connection: connection.sendall(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n"),
        lambda connection: connection.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        ),
        lambda connection: None,
    ],
    ids=["not-http", "line-too-long", "bad-chunks", "closed"],
)
def test_something_else_on_the_port_is_unhealthy_not_an_exception(server, reply):
    healthy, reason = outpost_health.probe(server(reply), expect="1.0.0", timeout=2.0)

    assert not healthy
    assert "unreachable" in reason


@pytest.mark.parametrize(
    ("body", "healthy"),
    [
        ('{"version": "1.0.0"}', True),
        ('{"version": "11.0.0"}', False),
        ("hello 1.0.0 ok", True),
        ("status: down, was 11.0.0", False),
        ("hello 1.0.0-rc.1", False),
        ("hello 1.0.0.1", False),
        ('["1.0.0"]', False),
        ('{"status": "ok"}', False),
    ],
)
def test_the_version_must_be_named_whole(server, body, healthy):
    assert outpost_health.probe(server(http_answer(body)), expect="1.0.0")[0] is healthy


def test_a_redirect_is_not_healthy(server):
    url = server(http_answer("", status="302 Found"))

    assert outpost_health.probe(url) == (False, f"{url} answered HTTP 302")


@pytest.mark.parametrize(
    ("body", "ready"),
    [
        ('{"status": 200, "readyConnections": 4}', True),
        ('{"status": 200, "readyConnections": 0}', False),
        ('{"status": 200, "readyConnections": -4}', False),
        ('{"status": 200, "readyConnections": true}', False),
        ('{"status": 200, "readyConnections": "4"}', False),
        ("[4]", False),
        ("not json", False),
    ],
)
def test_the_connector_is_ready_only_with_a_count_of_connections(server, body, ready):
    url = server(http_answer(body))
    metrics = url.removeprefix("http://").removesuffix("/healthz")

    assert outpost_cloudflared.probe_ready(metrics)[0] is ready
