"""
Signed outpost events (``_utils/outpost_events.py``) and what the audit returner does with them: a
signed event is a decision, an unsigned or badly signed one is a minion's forgery, kept only as a
security record. Also the wider redaction of job arguments.
"""

import importlib.util
import json
from unittest import mock

import pytest

import outpost_audit
import outpost_events
from tests.conftest import REPO

KEY_TEXT = (
    "-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-key-but-private\n-----END RSA PRIVATE KEY-----\n"
)
TAG = "outpost/release/hello/6.6.6/succeeded"


@pytest.fixture
def opts(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "master.pem").write_text(KEY_TEXT)
    outpost_events._KEYS.clear()
    return {
        "__role": "master",
        "pki_dir": str(pki),
        "sock_dir": str(tmp_path / "sock"),
        "cachedir": str(tmp_path / "cache"),
        "log_file": str(tmp_path / "master.log"),
        "outpost": {
            "audit": {
                "trail": str(tmp_path / "audit" / "trail.jsonl"),
                "security_log": str(tmp_path / "audit" / "security.jsonl"),
            }
        },
    }


@pytest.fixture
def returner(opts):
    spec = importlib.util.spec_from_file_location(
        "outpost_audit_returner_signed", REPO / "_returners" / "outpost_audit.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = opts
    return module


def test_a_signed_event_verifies_and_any_change_breaks_it(opts):
    signed = outpost_events.sign(opts, TAG, {"rollout": 3, "clients_moved": ["client-1"]})
    assert outpost_events.verified(opts, TAG, dict(signed, _stamp="2026-12-04T00:00:00"))
    assert not outpost_events.verified(opts, TAG.replace("hello", "other"), signed)
    assert not outpost_events.verified(opts, TAG, dict(signed, rollout=4))
    assert not outpost_events.verified(opts, TAG, {"rollout": 3, "clients_moved": ["client-1"]})


def test_the_key_never_shows_in_the_event(opts):
    signed = outpost_events.sign(opts, TAG, {"rollout": 3})
    assert "not-a-real-key" not in json.dumps(signed)
    assert set(signed) == {"rollout", outpost_events.SIGNATURE}


def test_without_the_master_key_nothing_verifies(opts, tmp_path):
    signed = outpost_events.sign(opts, TAG, {"rollout": 3})
    elsewhere = dict(opts, pki_dir=str(tmp_path / "minion-pki"))
    assert not outpost_events.verified(elsewhere, TAG, signed)


def test_fire_puts_a_signed_event_on_the_master_bus(opts):
    with mock.patch.object(outpost_events.salt.utils.event, "get_master_event") as bus:
        outpost_events.fire(opts, TAG, {"rollout": 3})
    fired = bus.return_value.__enter__.return_value.fire_event
    data, tag = fired.call_args.args
    assert tag == TAG
    assert outpost_events.verified(opts, TAG, data)


def kept(opts):
    return outpost_audit.Trail(opts["outpost"]["audit"]["trail"]).records()


def test_a_signed_outpost_event_is_recorded_as_the_decision(returner, opts):
    data = outpost_events.sign(opts, TAG, {"rollout": 3, "clients_moved": ["client-1"]})
    returner.event_return([{"tag": TAG, "data": data}])
    (record,) = kept(opts)
    assert (record["kind"], record["app"], record["release"]) == ("release", "hello", "6.6.6")


@pytest.mark.parametrize(("signature", "why"), [(None, "unsigned"), ("0" * 64, "bad signature")])
def test_a_forged_outpost_event_is_a_security_record_never_a_decision(
    returner, opts, signature, why
):
    """client-2's event.send outpost/release/hello/6.6.6/succeeded became a trail record."""
    data = {"rollout": 3, "id": "client-2"}
    if signature:
        data[outpost_events.SIGNATURE] = signature
    returner.event_return([{"tag": TAG, "data": data}])

    (record,) = kept(opts)
    assert record["kind"] == "security"
    assert record["function"] == "forged outpost event from a minion"
    assert (record["reason"], record["minion"]) == (why, "client-2")
    assert (record["app"], record["release"]) == (None, None)
    security = opts["outpost"]["audit"]["security_log"]
    with open(security, encoding="utf-8") as stream:
        assert "forged outpost event from a minion" in stream.read()
    assert outpost_audit.verify(kept(opts))["ok"]


def test_secrets_in_key_value_strings_environments_and_dsns_are_redacted():
    """pillar={"token": ...} as a string, environment values, pwd, bearer and a DSN's
    password= were left in the clear."""
    arguments = [
        'pillar={"token": "S3CR3T-1", "app": "hello"}',
        {"environment": {"DB": "S3CR3T-2"}, "env": {"X": "S3CR3T-3"}},
        "pwd=S3CR3T-4",
        "Authorization: Bearer S3CR3T-5",
        {"dsn": "host=db password=S3CR3T-6"},
        "host=db user=app password=S3CR3T-7",
        "postgresql://app:S3CR3T-8@db/app",
        {"passwd": "S3CR3T-9", "credentials": {"user": "S3CR3T-10"}, "private": "S3CR3T-11"},
        "hello",
        "version=1.2.0",
    ]
    redacted = outpost_audit.redact(arguments)
    text = json.dumps(redacted)
    assert "S3CR3T" not in text
    assert redacted[0] == 'pillar={"app": "hello", "token": "***"}'
    assert redacted[1] == {"environment": {"DB": "***"}, "env": {"X": "***"}}
    assert redacted[-2:] == ["hello", "version=1.2.0"]
