"""
The ``outpost_release`` runner with a mocked LocalClient and a registry in the test's folder:
what it does with a client's start event, and with an announcement of an older release.
"""

import base64
import importlib.util
import json
import time
from unittest import mock

import pytest
import salt.client
from salt.exceptions import CommandExecutionError, SaltInvocationError

import outpost_registry
import outpost_webhook
from tests.conftest import REPO, public_key_b64

SECRET = "webhook-secret"
SHA = "a" * 64


@pytest.fixture
def runner(tmp_path, signing_key):
    spec = importlib.util.spec_from_file_location(
        "outpost_release_runner", REPO / "_runners" / "outpost_release.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = {
        "id": "master-1",
        "cachedir": str(tmp_path),
        "outpost": {
            "webhook": {"secret": SECRET},
            "releases": {
                "signing_keys": [public_key_b64(signing_key)],
                "allowlist": ["salt://releases/"],
            },
            "apps": {"hello": {"clients": ["client-1"]}},
        },
    }
    module.emitted = []
    module._emit = lambda tag, data: module.emitted.append((tag, data))
    module.local = mock.create_autospec(salt.client.LocalClient, instance=True)
    module.local.cmd_async.return_value = "20261204012345678901"
    module._local = lambda: module.local
    return module


def announcement(signing_key, version, stamp=None):
    manifest = {"app": "hello", "version": version, "sha256": SHA, "name": "outpost-hello"}
    signature = signing_key.sign(outpost_webhook.canonical_manifest(manifest))
    body = json.dumps(
        {
            "manifest": manifest,
            "signature": base64.b64encode(signature).decode(),
            "artifact_url": f"salt://releases/hello/outpost-hello-{version}.pyz",
        }
    )
    stamp = int(time.time()) if stamp is None else stamp
    headers = {
        "X-Outpost-Timestamp": str(stamp),
        "X-Outpost-Signature": outpost_webhook.hmac_signature(SECRET, stamp, body),
    }
    return body, headers


def registry(runner):
    return outpost_registry.Registry.from_opts(runner.__opts__)


# -- start events -------------------------------------------------------------------------------


def test_a_start_is_converged_with_a_list_target(runner):
    done = runner.converge("client-1", tag="salt/minion/client-1/start")

    assert done["jid"] == "20261204012345678901"
    args, kwargs = runner.local.cmd_async.call_args
    assert args[:3] == (["client-1"], "state.apply", ["outpost.apps"])
    assert kwargs["tgt_type"] == "list"


def test_a_start_whose_data_names_another_client_is_ignored(runner):
    """A forged salt/minion/client-9/start with data id '*' made the master state.apply '*'."""
    done = runner.converge("client-1", tag="salt/minion/client-9/start")

    assert "does not name" in done["ignored"]
    runner.local.cmd_async.assert_not_called()


@pytest.mark.parametrize("client", ["*", "client-*", "client-1,client-2", "G@os:Windows", None])
def test_a_start_naming_a_target_expression_is_refused(runner, client):
    with pytest.raises(SaltInvocationError, match="client: .* is not one plain minion id"):
        runner.converge(client, tag=f"salt/minion/{client}/start")
    runner.local.cmd_async.assert_not_called()


# -- announcements ------------------------------------------------------------------------------


def test_an_older_release_announced_again_is_refused(runner, signing_key):
    """1.1.0 running and 1.2.0 queued, a re-sent 1.1.0 announcement superseded 1.2.0: the
    clients would have been downgraded."""
    for version in ("1.1.0", "1.2.0"):
        assert runner.receive(*announcement(signing_key, version), run=False)["accepted"]
    running = registry(runner).rollouts("hello")[-1]
    registry(runner).update_rollout(running["id"], "succeeded", status="succeeded")
    before = registry(runner).rollouts("hello")
    runner.emitted.clear()

    done = runner.receive(*announcement(signing_key, "1.0.0", stamp=int(time.time()) - 1))

    assert done["accepted"] is False
    assert done["reason"].startswith("version: 1.0.0 of hello is not newer than 1.2.0 (queued)")
    assert [tag for tag, _ in runner.emitted] == ["outpost/security/release-refused"]
    assert registry(runner).rollouts("hello") == before
    runner.local.cmd_async.assert_not_called()


def test_an_exact_replay_is_a_duplicate_and_starts_nothing(runner, signing_key):
    """The same signed request sent twice within its 5 minutes must be one rollout."""
    sent = announcement(signing_key, "1.1.0")
    first = runner.receive(*sent, run=False)
    runner.emitted.clear()

    again = runner.receive(*sent, run=False)

    assert first["status"] == "running"
    assert again["duplicate"] is True
    assert runner.emitted == []
    assert len(registry(runner).rollouts("hello")) == 1


@pytest.mark.parametrize("spelling", ["0{}", " {} ", "+{}", "{}\n", "\u0661{}"])
def test_a_respelled_timestamp_cannot_replay_a_halted_release(runner, signing_key, spelling):
    """int() takes "0<ts>", "+<ts>" and white space: each spelling was a new announcement of
    the same signed request, and a halted release may be announced again."""
    body, headers = announcement(signing_key, "1.2.0")
    first = runner.receive(body, headers, run=False)
    registry(runner).update_rollout(first["rollout"], "halted", status="halted")
    stamp = spelling.format(headers["X-Outpost-Timestamp"])
    respelled = dict(headers, **{"X-Outpost-Timestamp": stamp})

    again = runner.receive(body, respelled, run=False)

    assert again["accepted"] is False
    assert again["reason"].startswith("headers: X-Outpost-Timestamp is not Unix seconds")
    assert len(registry(runner).rollouts("hello")) == 1


@pytest.mark.parametrize("app", ["con", "cloudflared", "heartbeat"])
def test_an_app_no_client_could_install_is_refused(runner, signing_key, app):
    body, headers = announcement(signing_key, "1.0.0")
    manifest = dict(json.loads(body)["manifest"], app=app)
    signed = base64.b64encode(signing_key.sign(outpost_webhook.canonical_manifest(manifest)))
    body = json.dumps(dict(json.loads(body), manifest=manifest, signature=signed.decode()))
    stamp = int(time.time())
    headers = {
        "X-Outpost-Timestamp": str(stamp),
        "X-Outpost-Signature": outpost_webhook.hmac_signature(SECRET, stamp, body),
    }

    done = runner.receive(body, headers, run=False)

    assert done["accepted"] is False
    assert done["reason"].startswith("manifest.app: is ")
    assert registry(runner).rollouts(app) == []


def with_valid_hmac(body):
    stamp = int(time.time())
    return body, {
        "X-Outpost-Timestamp": str(stamp),
        "X-Outpost-Signature": outpost_webhook.hmac_signature(SECRET, stamp, body),
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"manifest": 5}, "manifest: missing or not an object"),
        ({"manifest": [{}]}, "manifest: missing or not an object"),
        ({"manifest": None}, "manifest: missing or not an object"),
        ({"signature": 5}, "signature: missing or not a string"),
        ({"signature": None}, "signature: missing or not a string"),
        ({"artifact_url": ["salt://releases/"]}, "artifact_url: missing or not a string"),
        ({"manifest": {"x": json.loads("[" * 33 + "]" * 33)}}, "manifest: nested deeper than 32"),
    ],
)
def test_a_wrong_shaped_field_is_refused_naming_it(runner, signing_key, fields, reason):
    """A body with a valid HMAC and manifest 5 raised TypeError in parse_body, so the runner
    left no outpost/security/release-refused event."""
    body = dict(json.loads(announcement(signing_key, "1.0.0")[0]), **fields)

    done = runner.receive(*with_valid_hmac(json.dumps(body)), run=False)

    assert done["accepted"] is False
    assert done["reason"].startswith(reason)
    assert [tag for tag, _ in runner.emitted] == ["outpost/security/release-refused"]
    assert registry(runner).rollouts("hello") == []


def test_nan_in_a_body_is_not_json(runner):
    """Python's json read NaN, which no JSON sender writes."""
    done = runner.receive(*with_valid_hmac('{"manifest": {"size": NaN}}'), run=False)

    assert done == {"accepted": False, "reason": "body: not JSON (NaN is not a JSON value)"}


def test_a_deeply_nested_body_is_refused_naming_it(runner):
    """A body of 100000 '[' raised RecursionError in parse_body."""
    done = runner.receive(*with_valid_hmac("[" * 100_000), run=False)

    assert done == {"accepted": False, "reason": "body: nested deeper than JSON can be read"}
    assert [tag for tag, _ in runner.emitted] == ["outpost/security/release-refused"]


def test_a_replay_after_its_claim_expired_is_still_one_rollout(runner, signing_key):
    sent = announcement(signing_key, "1.1.0")
    first = runner.receive(*sent, run=False)
    with registry(runner)._transaction() as cursor:
        cursor.execute("DELETE FROM claims")

    again = runner.receive(*sent, run=False)

    assert again == {"accepted": True, "rollout": first["rollout"], "status": "duplicate"}


# -- the health gate ----------------------------------------------------------------------------


def running_rollout(runner, clients=("client-1", "client-2")):
    kept = registry(runner)
    kept.register_release("hello", "1.1.0", SHA, "salt://releases/hello/h-1.1.0.pyz", {})
    rollout_id, status = kept.claim_rollout("hello", "1.1.0", owner="master-1", lease=60)
    assert status == "running"
    kept.set_desired("hello", list(clients), "1.1.0", rollout_id, "promote")
    return rollout_id


def test_a_gate_after_a_passed_state_run_with_no_soak_asks_no_client(runner):
    """With soak 0 the gate asked every client's health again right after the state run that
    had just gated each of them: one more job per client, 0.3 core-seconds each."""
    rollout_id = running_rollout(runner)

    counts = runner.gate(rollout_id, 0, ["client-1", "client-2"], state_gated=True)

    runner.local.cmd.assert_not_called()
    assert counts == {"batch": 0, "healthy": 2, "failed": 0}
    assert registry(runner).lease(rollout_id)["batches_done"] == 1
    [(tag, data)] = runner.emitted
    assert (tag, data["checked_by"]) == ("outpost/release/hello/1.1.0/gate", "state run")


@pytest.mark.parametrize(
    ("state_gated", "soak", "max_failures"), [(False, 0, 0), (True, 0.1, 0), (True, 0, 1)]
)
def test_a_gate_that_must_hold_or_was_not_gated_asks_the_clients(
    runner, state_gated, soak, max_failures
):
    """A state run that passed with allow_fail let failed clients through, and a soak must see
    the release stay healthy: only the gate's own check finds those."""
    rollout_id = running_rollout(runner)
    runner.local.cmd.return_value = {
        "client-1": {"healthy": True, "version": "1.1.0"},
        "client-2": {"healthy": True, "version": "1.0.0"},
    }

    runner.local.cmd.return_value["client-3"] = {"healthy": False, "version": "1.1.0"}
    clients = ["client-1", "client-2", "client-3"]

    with pytest.raises(CommandExecutionError, match="failed on client-2, client-3"):
        runner.gate(
            rollout_id, 0, clients, soak=soak, max_failures=max_failures, state_gated=state_gated
        )

    (args, _), *_ = runner.local.cmd.call_args_list
    assert args[:2] == (clients, "shiv_app.check_health")
    assert registry(runner).lease(rollout_id)["batches_done"] == 0
    assert runner.emitted[-1][1]["checked_by"] == "shiv_app.check_health"
