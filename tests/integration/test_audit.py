"""
The audit trail on a real master: job returns and outpost's events land in the chained trail
(and the pgjsonb job cache), secrets redacted; a trail that cannot be written never fails a job.
"""

import shutil
import time

import psycopg2
import pytest

import outpost_audit

SECRET = "hunter2-not-for-logs"


def read_text(path):
    with open(path, encoding="utf-8", errors="replace") as text:
        return text.read()


def trail_records(audit_dir):
    return outpost_audit.Trail(audit_dir / "trail.jsonl").records()


def wait_for_record(audit_dir, match, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [entry for entry in trail_records(audit_dir) if match(entry)]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no matching record in the trail after {timeout}s")


def test_a_job_return_is_chained_into_the_trail_with_secrets_redacted(
    salt_cli, salt_minion, audit_dir
):
    ret = salt_cli.run("test.arg", "hello", f"password={SECRET}", minion_tgt=salt_minion.id)
    assert ret.returncode == 0, ret

    (record,) = wait_for_record(
        audit_dir, lambda entry: entry["function"] == "test.arg" and entry["kind"] == "job"
    )
    assert record["minion"] == salt_minion.id
    assert record["target"] == salt_minion.id
    assert record["user"]
    assert record["jid"]
    assert record["result"] is True
    assert record["retcode"] == 0
    assert record["arguments"] == ["hello", {"__kwarg__": True, "password": "***"}]
    assert SECRET not in (audit_dir / "trail.jsonl").read_text()
    assert outpost_audit.verify(trail_records(audit_dir))["ok"]


def stored_echoes(config):
    connection = psycopg2.connect(
        host=config["returner.pgjsonb.host"],
        port=config["returner.pgjsonb.port"],
        dbname=config["returner.pgjsonb.db"],
        user=config["returner.pgjsonb.user"],
        password=config["returner.pgjsonb.pass"],
    )
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT r.id, r.return, j.load->>'fun' FROM salt_returns r "
                "JOIN jids j ON j.jid = r.jid WHERE r.fun = 'test.echo'"
            )
            return cursor.fetchall()
    finally:
        connection.close()


def test_job_returns_are_kept_in_the_pgjsonb_job_cache(salt_cli, salt_minion, salt_master):
    if salt_master.config.get("master_job_cache") != "pgjsonb":
        pytest.skip("no PostgreSQL: the master keeps Salt's local job cache")
    ret = salt_cli.run("test.echo", "kept-in-postgres", minion_tgt=salt_minion.id)
    assert ret.returncode == 0, ret
    config = salt_master.config
    # Salt fires the return event before its job cache stores the return: poll.
    deadline = time.monotonic() + 60
    rows = stored_echoes(config)
    while (salt_minion.id, "kept-in-postgres", "test.echo") not in rows:
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)
        rows = stored_echoes(config)
    assert (salt_minion.id, "kept-in-postgres", "test.echo") in rows
    assert config["keep_jobs_seconds"] == 7 * 24 * 3600
    assert config["archive_jobs"] is True

    looked_up = salt_master.salt_run_cli(timeout=60).run(
        "jobs.list_jobs", "search_function=test.echo"
    )
    assert looked_up.returncode == 0, looked_up
    assert looked_up.data, "jobs.list_jobs read nothing back from the pgjsonb job cache"


def test_with_the_trail_store_down_jobs_still_succeed_and_the_outage_is_logged(
    salt_cli, salt_minion, salt_master, audit_dir
):
    """The trail's folder is replaced by a file: nothing can be written there."""
    moved = audit_dir.with_name("audit-moved")
    log_file = salt_master.config["log_file"]
    logged_before = len(read_text(log_file))
    shutil.move(audit_dir, moved)
    audit_dir.write_text("not a folder\n")
    try:
        ret = salt_cli.run("test.echo", "while-the-trail-is-down", minion_tgt=salt_minion.id)
        assert ret.returncode == 0, ret
        assert ret.data == "while-the-trail-is-down"

        deadline = time.monotonic() + 60
        logged = ""
        while "audit trail unavailable" not in logged and time.monotonic() < deadline:
            time.sleep(0.5)
            logged = read_text(log_file)[logged_before:]
        lines = [line for line in logged.splitlines() if "audit trail unavailable" in line]
        assert lines, "the master did not log the trail's outage"
        assert "CRITICAL" in lines[0]
    finally:
        audit_dir.unlink()
        shutil.move(moved, audit_dir)

    ret = salt_cli.run("test.echo", "after-the-outage", minion_tgt=salt_minion.id)
    assert ret.returncode == 0, ret
    wait_for_record(audit_dir, lambda entry: entry["arguments"] == ["after-the-outage"])
    assert outpost_audit.verify(trail_records(audit_dir))["ok"]


def test_a_minions_forged_outpost_event_is_a_security_record_and_the_masters_is_a_decision(
    salt_call, salt_master, audit_dir
):
    """client-2's event.send outpost/release/hello/6.6.6/succeeded became a trail record."""
    forged = salt_call.run("event.send", "outpost/release/hello/6.6.6/succeeded", rollout=1)
    assert forged.returncode == 0, forged
    refused = salt_master.salt_run_cli(timeout=60).run(
        "outpost_release.receive", body="{}", headers="{}", run=False
    )
    assert refused.returncode == 0, refused

    (record,) = wait_for_record(
        audit_dir, lambda entry: entry["tag"] == "outpost/release/hello/6.6.6/succeeded"
    )
    assert (record["kind"], record["function"]) == (
        "security",
        "forged outpost event from a minion",
    )
    assert record["release"] is None
    signed = wait_for_record(
        audit_dir,
        lambda entry: (
            entry["tag"] == "outpost/security/release-refused"
            and entry["function"] != "forged outpost event from a minion"
        ),
    )
    assert signed[-1]["reason"]
    assert outpost_audit.verify(trail_records(audit_dir))["ok"]
