"""
The beacons' configuration checks and memory, with the execution functions they call stood in:
a bad setting is refused when the beacon is configured, never raised every interval after.
"""

import importlib.util

import pytest

from tests.conftest import REPO


def load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "_beacons" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("app_health", [{"failures": float("nan")}]),
        ("app_health", [{"failures": 1.5}]),
        ("app_health", [{"failures": True}]),
        ("app_health", [{"failures": 0}]),
        ("app_health", [{"heartbeat": "30"}]),
        ("app_health", [{"heartbeat": float("inf")}]),
        ("app_health", ["failures"]),
        ("app_health", {"failures": 3}),
        ("tunnel_health", [{"failures": True}]),
        ("tunnel_health", [{"failures": 2.5}]),
        ("tunnel_health", [{1: 2}]),
        ("app_health", [{1: 2}]),
        ("tunnel_health", ["failures"]),
    ],
)
def test_a_bad_setting_is_refused_when_the_beacon_is_configured(name, config):
    valid, why = load(name).validate(config)

    assert valid is False
    assert why.startswith(f"{name} beacon:")


def test_app_health_takes_numbers_of_at_least_one():
    beacon = load("app_health")

    assert beacon.validate([{"interval": 5}, {"failures": 2}, {"heartbeat": 30.5}])[0]


def test_a_connector_removed_while_unhealthy_starts_out_healthy_when_installed_again():
    beacon = load("tunnel_health")
    answers = {"status": {"healthy": False, "service": "STOPPED", "reason": "stopped"}}
    beacon.__salt__ = {
        "cloudflared.check_ready": lambda: {"healthy": False},
        "cloudflared.get_status": lambda: answers["status"],
    }
    assert [event["status"] for event in beacon.beacon([{"failures": 1}])] == ["unhealthy"]

    answers["status"] = {"service": "ABSENT"}
    assert beacon.beacon([{"failures": 1}]) == []
    answers["status"] = {"healthy": True, "service": "RUNNING", "reason": "ready"}

    assert beacon.beacon([{"failures": 1}]) == []
    assert beacon.MEMORY == {"failures": 0, "sent": "healthy"}
