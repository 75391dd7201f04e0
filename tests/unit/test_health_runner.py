"""
The ``outpost_health`` runner with a mocked LocalClient: beacon events are untrusted, so a client
named in a tag must be one plain minion id, every call targets it as a list, and nothing is
restarted or rolled back unless the client itself says it is unhealthy.
"""

import datetime
import importlib.util
import json
from unittest import mock

import pytest
import salt.client
import salt.config
from salt.exceptions import SaltInvocationError

import outpost_registry
from tests.conftest import REPO

UNHEALTHY = {"healthy": False, "reason": "HTTP 503", "current": "1.2.0", "live_since": None}
HEALTHY = {"healthy": True, "reason": "HTTP 200", "current": "1.2.0", "live_since": None}


@pytest.fixture
def runner(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "outpost_health_runner", REPO / "_runners" / "outpost_health.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = {
        "id": "master-1",
        "cachedir": str(tmp_path),
        "outpost": {"health": {"settle": 0, "max_actions": 3}},
    }
    module.emitted = []
    module._emit = lambda tag, data: module.emitted.append(tag)
    module.local = mock.create_autospec(salt.client.LocalClient, instance=True)
    module._local = lambda: module.local
    return module


def answer(runner, **by_function):
    """The client answers each function with the given return."""

    def cmd(tgt, fun, arg=(), tgt_type="glob", **kwargs):
        assert tgt_type == "list", tgt_type
        assert isinstance(tgt, list), tgt
        ret = by_function[fun]
        # As on a minion: an unhealthy answer is data with a non-zero retcode.
        unhealthy = isinstance(ret, dict) and ret.get("healthy") is False
        return {minion: {"ret": ret, "retcode": int(unhealthy)} for minion in tgt}

    runner.local.cmd.side_effect = cmd


def called(runner):
    return [call.args[1] for call in runner.local.cmd.call_args_list]


def unhealthy_event(runner, client, app="hello", sent=1.0):
    tag = f"salt/beacon/{client}/app_health/{app}/unhealthy"
    return runner.handle(tag, {"data": {"reason": "told so", "time": sent}})


@pytest.mark.parametrize("client", ["*", "client-*", "client-1,client-2", "E@.*", "a b", ""])
def test_a_forged_event_for_a_target_expression_is_ignored(runner, client):
    """client-2 fired salt/beacon/*/app_health/hello/unhealthy and the master restarted the app
    on every client, recording a remediation for client '*'."""
    done = unhealthy_event(runner, client)

    assert "not one plain minion id" in done["ignored"]
    runner.local.cmd.assert_not_called()
    assert runner.emitted == []
    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    assert registry.remediations(client, "1970-01-01") == []


def test_a_forged_heartbeat_for_a_target_expression_is_ignored(runner):
    done = runner.handle("salt/beacon/*/app_health/heartbeat", {"apps": {}})

    assert "ignored" in done
    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    assert registry.newly_missing(1e12, 1e12) == {}


def test_a_healthy_client_reported_unhealthy_is_left_alone(runner):
    """A forged unhealthy event made the master restart a healthy client's app and use up its
    max_actions."""
    answer(runner, **{"shiv_app.get_status": HEALTHY})

    decisions = [unhealthy_event(runner, "client-1", sent=n)["decision"] for n in range(5)]

    assert decisions == ["not-confirmed"] * 5
    assert set(called(runner)) == {"shiv_app.get_status"}
    assert runner.emitted[-1] == "outpost/remediation/client-1/hello/not-confirmed"
    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    kept = registry.remediations("client-1", "1970-01-01")
    assert {entry["decision"] for entry in kept} == {"not-confirmed"}


def test_an_unhealthy_client_is_restarted_as_a_list_target(runner):
    answer(
        runner,
        **{"shiv_app.get_status": UNHEALTHY, "shiv_app.restart_app": {"restarted": True}},
    )

    done = runner.remediate("client-1", "hello", "told so")

    assert called(runner)[:2] == ["shiv_app.get_status", "shiv_app.restart_app"]
    for call in runner.local.cmd.call_args_list:
        assert call.args[0] == ["client-1"]
        assert call.kwargs["tgt_type"] == "list"
    assert done["decision"] in ("restart", "rollback", "alert")


def test_a_tunnel_reported_not_ready_but_ready_is_left_alone(runner):
    answer(runner, **{"cloudflared.check_ready": HEALTHY})

    done = runner.handle(
        "salt/beacon/client-1/tunnel_health/unhealthy", {"reason": "forged", "time": 2.0}
    )

    assert done["decision"] == "not-confirmed"
    assert called(runner) == ["cloudflared.check_ready"]


def test_remediate_refuses_a_target_expression(runner):
    with pytest.raises(SaltInvocationError, match="client: '\\*' is not one plain minion id"):
        runner.remediate("*", "hello", "told so")
    runner.local.cmd.assert_not_called()


def test_a_claim_left_by_a_stopped_master_does_not_stop_self_healing(runner):
    """After a master restart mid-remediation every later unhealthy event was merged for ever."""
    answer(runner, **{"shiv_app.get_status": HEALTHY})
    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    registry.claim_remediation("client-1", "hello")
    assert runner.remediate("client-1", "hello", "told so")["decision"] == "merged"

    runner.__opts__["outpost"]["health"].update(action_timeout=0, settle=0)
    runner.MARGIN = 0

    assert runner.remediate("client-1", "hello", "told so")["decision"] == "not-confirmed"


def test_an_app_removed_from_the_client_is_let_go(runner):
    answer(runner, **{"shiv_app.get_status": dict(UNHEALTHY, current=None)})

    done = runner.remediate("client-1", "hello", "told so")

    assert done["decision"] == "gone"
    assert called(runner) == ["shiv_app.get_status"]
    assert "outpost/alert/client-1/hello" not in runner.emitted


def test_the_client_watches_a_restarted_app_settle(runner):
    runner.__opts__["outpost"]["health"]["settle"] = 4
    answer(
        runner,
        **{"shiv_app.get_status": UNHEALTHY, "shiv_app.restart_app": {"restarted": "1.2.0"}},
    )

    done = runner.remediate("client-1", "hello", "told so")

    assert (done["decision"], done["result"]) == ("restart", "restarted, healthy")
    assert called(runner) == ["shiv_app.get_status", "shiv_app.restart_app"]
    assert runner.local.cmd.call_args_list[1].kwargs["kwarg"] == {"settle": 4.0}


def test_the_same_event_again_is_merged_and_another_masters_copy_is_left_to_it(runner):
    answer(runner, **{"shiv_app.get_status": HEALTHY})
    tag = "salt/beacon/client-1/app_health/hello/unhealthy"
    event = {"app": "hello", "reason": "told so"}

    first = runner.handle(tag, dict(event, _stamp="2026-12-04T00:00:00"))
    again = runner.handle(tag, dict(event, _stamp="2026-12-04T00:00:01"))
    runner.__opts__["id"] = "master-2"
    other = runner.handle(tag, dict(event, _stamp="2026-12-04T00:00:00"))

    assert [first["decision"], again["decision"]] == ["not-confirmed", "merged"]
    assert other == {"decision": "heard by another master"}
    assert called(runner) == ["shiv_app.get_status"]


def test_an_app_the_client_is_changing_is_judged_once_the_change_is_done(runner):
    """A switch holds the app's lock: a restart queued behind it timed out on the master and
    counted as a relapse, and the rollback that followed undid a release that may be healthy."""
    runner.CHANGING_POLL = 0
    statuses = [dict(UNHEALTHY, changing=True)] * 2 + [HEALTHY]

    def cmd(tgt, fun, arg=(), tgt_type="glob", **kwargs):
        return {minion: {"ret": statuses.pop(0), "retcode": 0} for minion in tgt}

    runner.local.cmd.side_effect = cmd

    done = unhealthy_event(runner, "client-1")

    assert done["decision"] == "not-confirmed"
    assert called(runner) == ["shiv_app.get_status"] * 3


def test_a_change_that_never_ends_is_left_to_a_person(runner):
    runner.CHANGING_POLL = 0
    runner.__opts__["outpost"]["health"]["action_timeout"] = 0
    answer(runner, **{"shiv_app.get_status": dict(UNHEALTHY, changing=True)})

    done = unhealthy_event(runner, "client-1")

    assert done["decision"] == "alert"
    assert "held its lock for too long" in done["reason"]
    assert "shiv_app.restart_app" not in called(runner)


def test_a_restart_the_client_does_not_answer_is_not_rolled_back_on_top_of(runner):
    def cmd(tgt, fun, arg=(), tgt_type="glob", **kwargs):
        if fun == "shiv_app.restart_app":
            return {}
        return {minion: {"ret": dict(UNHEALTHY, live_since="9999"), "retcode": 0} for minion in tgt}

    runner.local.cmd.side_effect = cmd

    done = unhealthy_event(runner, "client-1")

    assert done["decision"] == "alert"
    assert "did not answer shiv_app.restart_app" in done["reason"]
    assert "shiv_app.rollback_release" not in called(runner)


@pytest.mark.parametrize("app", ["hello", "cloudflared"])
def test_a_client_that_cannot_say_how_the_app_is_alerts_a_person(runner, app):
    """supervisord gone: the beacon reports the app once, and the master dropped it quietly."""
    error = "supervisorctl: unix:///run/supervisor.sock no such file"
    answer(runner, **{"shiv_app.get_status": error, "cloudflared.check_ready": error})

    done = runner.remediate("client-1", app, "told so")

    assert done["decision"] == "alert"
    assert "could not say how the app is" in done["reason"]
    assert runner.emitted[0] == f"outpost/alert/client-1/{app}"
    assert len(called(runner)) == 1


@pytest.mark.parametrize("app", ["Zz", "con", "a" * 41, "cloudflared", "heartbeat"])
def test_an_event_naming_no_possible_app_is_ignored(runner, app):
    """Forged events for made-up apps each became an alert and three calls to the client;
    an app named like the connector restarted the connector."""
    done = unhealthy_event(runner, "client-1", app=app)

    assert "ignored" in done
    runner.local.cmd.assert_not_called()
    assert runner.emitted == []


@pytest.mark.parametrize("data", [{"data": "zzz"}, {"data": ["a"]}, ["x"], "zzz"])
def test_an_event_whose_data_is_not_a_mapping_is_ignored(runner, data):
    """It raised AttributeError after the event's claim was taken, so it was never acted on."""
    done = runner.handle("salt/beacon/client-1/app_health/hello/unhealthy", data)

    assert "not a mapping" in done["ignored"]
    runner.local.cmd.assert_not_called()


def test_a_heartbeat_of_a_client_without_an_accepted_key_is_not_stored(runner):
    runner._has_accepted_key = lambda client: client == "client-1"

    done = runner.handle("salt/beacon/ghost-9/app_health/heartbeat", {"apps": {}})

    assert "no accepted key" in done["ignored"]
    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    assert registry.newly_missing(1e12, 1e12) == {}


def test_a_heartbeat_stores_a_bounded_summary_of_its_apps(runner):
    """A forged heartbeat with a 100 KB value went into the registry as it was."""
    runner._has_accepted_key = lambda client: client == "client-1"
    apps = {"hello": {"release": "1.2.0", "status": "x" * 100_000, "extra": "y"}, "Zz": {}, 1: {}}
    apps.update({f"app{number}": {"status": "healthy"} for number in range(200)})

    runner.handle("salt/beacon/client-1/app_health/heartbeat", {"apps": apps})

    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    with registry._transaction() as cursor:
        (stored,) = cursor.one("SELECT apps FROM heartbeats WHERE client = ?", ("client-1",))
    kept = json.loads(stored)
    assert len(kept) == runner.MAX_HEARTBEAT_APPS
    assert "Zz" not in kept
    assert kept["app0"] == {"release": None, "status": "healthy"}
    assert len(stored) < 10_000


def test_only_an_accepted_key_in_salts_key_store_counts(runner, tmp_path):
    """The lookup reads Salt's own key store, one key, whatever its state."""
    public = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
    for folder, client in (("minions", "client-1"), ("minions_pre", "client-2")):
        (tmp_path / "pki" / folder).mkdir(parents=True)
        (tmp_path / "pki" / folder / client).write_text(public)
    master = salt.config.master_config(None)
    runner.__opts__ = dict(master, **runner.__opts__, pki_dir=str(tmp_path / "pki"))

    assert runner._has_accepted_key("client-1") is True
    assert runner._has_accepted_key("client-2") is False
    assert runner._has_accepted_key("ghost-9") is False


def recently():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def test_an_app_failing_again_long_after_a_good_restart_is_rolled_back(runner):
    """The issue's "fails a minute later": the restart looked good, the beacon's next unhealthy
    event comes after the settle time, and the runner then takes the next step."""
    answer(
        runner,
        **{
            "shiv_app.get_status": dict(UNHEALTHY, live_since=recently()),
            "shiv_app.restart_app": {"restarted": "1.2.0"},
            "shiv_app.rollback_release": {"previous": "1.2.0", "live": "1.1.0"},
        },
    )

    first = unhealthy_event(runner, "client-1", sent=1.0)
    later = unhealthy_event(runner, "client-1", sent=61.0)

    assert (first["decision"], first["result"]) == ("restart", "restarted, healthy")
    assert later["decision"] == "rollback"
    assert later["reason"].startswith("unhealthy again after a restart")
    assert later["result"] == "rolled back from 1.2.0 to 1.1.0"
    registry = outpost_registry.Registry.from_opts(runner.__opts__)
    assert registry.desired("hello") == {"client-1": "1.1.0"}


def test_an_old_release_failing_again_after_a_restart_is_left_to_a_person(runner):
    answer(
        runner,
        **{
            "shiv_app.get_status": dict(UNHEALTHY, live_since="2020-01-01T00:00:00+00:00"),
            "shiv_app.restart_app": {"restarted": "1.2.0"},
        },
    )

    unhealthy_event(runner, "client-1", sent=1.0)
    later = unhealthy_event(runner, "client-1", sent=61.0)

    assert later["decision"] == "alert"
    assert "not recent, so no rollback" in later["reason"]
    assert "shiv_app.rollback_release" not in called(runner)


def test_a_client_past_its_max_actions_only_gets_alerts(runner):
    """max_actions counts the restarts and rollbacks of all a client's apps in the window."""
    answer(
        runner,
        **{"shiv_app.get_status": UNHEALTHY, "shiv_app.restart_app": {"restarted": "1.2.0"}},
    )

    acted = [unhealthy_event(runner, "client-1", app=app) for app in ("a1", "a2", "a3")]
    fourth = unhealthy_event(runner, "client-1", app="a4")
    elsewhere = unhealthy_event(runner, "client-2", app="a4")

    assert [done["decision"] for done in acted] == ["restart"] * 3
    assert fourth["decision"] == "alert"
    assert fourth["reason"].startswith("3 actions on client-1 within")
    assert "outpost/alert/client-1/a4" in runner.emitted
    assert elsewhere["decision"] == "restart"
