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
    "config",
    [
        [{"failures": float("nan")}],
        [{"failures": 1.5}],
        [{"failures": True}],
        [{"failures": 0}],
        [{"heartbeat": "30"}],
        [{"heartbeat": float("inf")}],
        ["failures"],
        {"failures": 3},
    ],
)
def test_app_health_refuses_a_bad_setting(config):
    valid, why = load("app_health").validate(config)

    assert valid is False
    assert "app_health beacon:" in why


def test_app_health_takes_numbers_of_at_least_one():
    beacon = load("app_health")

    assert beacon.validate([{"interval": 5}, {"failures": 2}, {"heartbeat": 30.5}])[0]


@pytest.mark.parametrize("config", [[{"failures": True}], [{"failures": 2.0}], ["failures"]])
def test_tunnel_health_refuses_a_bad_setting(config):
    valid, why = load("tunnel_health").validate(config)

    assert valid is False
    assert "tunnel_health beacon:" in why


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
