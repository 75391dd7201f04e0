"""
The ``outpost_audit`` returner on its own: it joins a job's returns to its ``new`` event, leaves
Salt's own polling out, and never raises into the EventReturn process when its store is down.
"""

import importlib.util
import logging

import pytest

import outpost_audit
from tests.conftest import REPO


@pytest.fixture
def returner(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "outpost_audit_returner", REPO / "_returners" / "outpost_audit.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__opts__ = {
        "__role": "master",
        "cachedir": str(tmp_path / "cache"),
        "log_file": str(tmp_path / "master.log"),
        "outpost": {
            "audit": {
                "trail": str(tmp_path / "audit" / "trail.jsonl"),
                "security_log": str(tmp_path / "audit" / "security.jsonl"),
            }
        },
    }
    return module


def events():
    new = {"fun": "state.apply", "arg": ["outpost.apps"], "tgt": "client-*", "user": "ops"}
    ret = {
        "fun": "state.apply",
        "fun_args": ["outpost.apps"],
        "id": "client-2",
        "jid": "7",
        "return": {},
        "retcode": 0,
        "success": True,
    }
    poll = {
        "fun": "saltutil.find_job",
        "fun_args": ["7"],
        "id": "client-2",
        "jid": "8",
        "return": {},
        "retcode": 0,
    }
    return [
        {"tag": "salt/job/7/new", "data": new},
        {"tag": "salt/job/8/ret/client-2", "data": poll},
        {"tag": "salt/job/7/ret/client-2", "data": ret},
        {"tag": "outpost/security/release-refused", "data": {"reason": "headers: bad"}},
    ]


def test_returns_carry_who_started_the_job_and_polls_are_left_out(returner, tmp_path):
    returner.event_return(events())

    records = outpost_audit.Trail(tmp_path / "audit" / "trail.jsonl").records()
    assert [entry["kind"] for entry in records] == ["job", "security"]
    assert (records[0]["user"], records[0]["target"], records[0]["minion"]) == (
        "ops",
        "client-*",
        "client-2",
    )
    assert "release-refused" in (tmp_path / "audit" / "security.jsonl").read_text()


def test_a_store_that_is_down_is_logged_at_critical_and_never_raised(returner, tmp_path, caplog):
    """The trail's folder is a file: nothing can be written, and the job must not notice."""
    (tmp_path / "audit").write_text("")
    with caplog.at_level(logging.CRITICAL):
        returner.event_return(events())

    assert any(
        record.levelno == logging.CRITICAL and "audit trail unavailable" in record.getMessage()
        for record in caplog.records
    )


def test_it_declines_to_load_on_a_minion(returner):
    returner.__opts__ = {"__role": "minion"}
    assert returner.__virtual__() == (False, "outpost_audit returner: it runs on the master only")
