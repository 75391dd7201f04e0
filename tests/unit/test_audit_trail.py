"""
The audit trail's chain and report (``_utils/outpost_audit.py``) and ``outpost audit``: every kind
of tampering is found and named, secrets never reach a record, reports select and render.
"""

import csv
import io
import json

import pytest

import outpost_audit
from outpost.cli import main

T0 = "2026-12-01T10:00:00"


def job_event(jid, minion, fun, args, returned, success=True, stamp=T0):
    return (
        f"salt/job/{jid}/ret/{minion}",
        {
            "jid": jid,
            "id": minion,
            "fun": fun,
            "fun_args": args,
            "return": returned,
            "retcode": 0 if success else 2,
            "success": success,
            "_stamp": stamp,
        },
    )


def state(app, version, result=True, changes=None, comment=""):
    return {
        f"shiv_app_|-{app}_|-{app}_|-installed": {
            "name": app,
            "result": result,
            "comment": comment or f"{app}: switched to {version}",
            "changes": changes
            if changes is not None
            else {"version": {"old": None, "new": version}},
            "__run_num__": 0,
        }
    }


def story():
    """1.0.0 on client-1, a refused announcement, 1.1.0 failing on client-1 and a halt."""
    new = {"fun": "state.sls", "tgt": ["client-1"], "tgt_type": "list", "user": "ops"}
    records = [
        outpost_audit.record_from_job_return(
            *job_event("1", "client-1", "state.sls", ["outpost.apps"], state("hello", "1.0.0")),
            new,
        ),
        outpost_audit.record_from_event(
            "outpost/security/release-refused",
            {
                "reason": "headers: X-Outpost-Signature does not match the body",
                "_stamp": "2026-12-01T11:00:00",
            },
        ),
        outpost_audit.record_from_job_return(
            *job_event(
                "2",
                "client-1",
                "state.sls",
                ["outpost.apps"],
                state(
                    "hello",
                    "1.1.0",
                    result=False,
                    changes={},
                    comment="hello 1.1.0 failed its health gate",
                ),
                success=False,
                stamp="2026-12-01T12:00:00",
            ),
            new,
        ),
        outpost_audit.record_from_event(
            "outpost/release/hello/1.1.0/halted",
            {
                "reason": "canary: client-1 did not go live on 1.1.0",
                "clients_moved": ["client-1"],
                "rolled_back": 1,
                "_stamp": "2026-12-01T12:00:05",
            },
        ),
    ]
    return records


@pytest.fixture
def trail(tmp_path):
    path = tmp_path / "trail.jsonl"
    outpost_audit.Trail(path).append(story())
    outpost_audit.Trail(path).append(story())
    return path


def lines(path):
    return path.read_text().splitlines()


def problems(path):
    verdict = outpost_audit.verify(outpost_audit.Trail(path).records())
    return verdict["problems"]


def test_an_untouched_trail_verifies_and_chains_from_zeros(trail):
    records = outpost_audit.Trail(trail).records()
    assert [entry["seq"] for entry in records] == list(range(1, 9))
    assert records[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:], strict=False))
    verdict = outpost_audit.verify(records)
    assert verdict == {"ok": True, "count": 8, "head": f"8:{records[-1]['hash']}", "problems": []}


def test_a_changed_record_is_named(trail):
    text = lines(trail)
    entry = json.loads(text[2])
    entry["result"] = True
    text[2] = json.dumps(entry)
    trail.write_text("\n".join(text) + "\n")
    assert problems(trail) == [
        "record seq 3 (line 3) was changed: its hash does not match its content"
    ]


def test_a_changed_and_rehashed_record_is_named_by_its_broken_link(trail):
    text = lines(trail)
    entry = json.loads(text[2])
    entry["user"] = "someone-else"
    entry["hash"] = outpost_audit.record_hash(entry)
    text[2] = json.dumps(entry)
    trail.write_text("\n".join(text) + "\n")
    (problem,) = problems(trail)
    assert problem.startswith("record seq 3 (line 3) was changed and rehashed")


def test_a_removed_record_is_named(trail):
    text = lines(trail)
    del text[4]
    trail.write_text("\n".join(text) + "\n")
    assert problems(trail) == ["record(s) seq 5 removed before record seq 6 (line 5)"]


def test_an_inserted_record_is_named(trail):
    text = lines(trail)
    forged = dict(json.loads(text[3]), function="state.apply", seq=5)
    forged["prev"] = json.loads(text[3])["hash"]
    forged["hash"] = outpost_audit.record_hash(forged)
    text.insert(4, json.dumps(forged))
    trail.write_text("\n".join(text) + "\n")
    (problem,) = problems(trail)
    assert problem.startswith("record seq 5 (line 5) inserted")


def test_reordered_records_are_named(trail):
    text = lines(trail)
    text[3], text[4] = text[4], text[3]
    trail.write_text("\n".join(text) + "\n")
    (problem,) = problems(trail)
    assert problem == "record seq 5 (line 4) is out of order (reordered): it belongs after seq 4"


def test_a_line_that_is_not_json_is_named(trail):
    text = lines(trail)
    text[1] = text[1][:-5]
    trail.write_text("\n".join(text) + "\n")
    assert problems(trail) == ["line 2: malformed: not JSON (changed)"]


def test_a_deeply_nested_line_is_named_not_a_traceback(trail, capsys):
    """A line of 100000 '[' ended verify and report in a RecursionError traceback."""
    with trail.open("a") as out:
        out.write("[" * 100_000 + "\n")

    verified = main(["audit", "verify", "--trail", str(trail)])
    verify_out = capsys.readouterr().out
    reported = main(["audit", "report", "--trail", str(trail)])
    report_err = capsys.readouterr().err

    assert verified == reported == 1
    assert "TAMPERED: line 9: malformed: nested too deeply" in verify_out
    assert "TAMPERED: line 9: malformed: nested too deeply" in report_err
    with pytest.raises(outpost_audit.TrailUnavailable, match="its last line is not a record"):
        outpost_audit.Trail(trail).append(story())


def test_a_cut_off_end_shows_against_the_head_noted_earlier(trail):
    head = outpost_audit.verify(outpost_audit.Trail(trail).records())["head"]
    trail.write_text("\n".join(lines(trail)[:-1]) + "\n")
    verdict = outpost_audit.verify(outpost_audit.Trail(trail).records(), expect_head=head)
    assert verdict["problems"] == [
        "record seq 8, the head noted earlier, is missing: the end was cut off (removed)"
    ]


def test_secrets_in_arguments_are_redacted():
    args = [
        "hello",
        "password=s3cret",
        {
            "__kwarg__": True,
            "env": {"DB_URL": "postgres://x:y@z"},
            "api_token": "t0ken",
            "port": 8080,
        },
    ]
    record = outpost_audit.record_from_job_return(
        *job_event("9", "client-1", "shiv_app.activate_release", args, True)
    )
    text = json.dumps(record)
    for secret in ("s3cret", "postgres://x:y@z", "t0ken"):
        assert secret not in text
    assert record["arguments"][2] == {
        "__kwarg__": True,
        "env": {"DB_URL": "***"},
        "api_token": "***",
        "port": 8080,
    }


def test_a_trail_that_cannot_be_written_raises_trail_unavailable(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(outpost_audit.TrailUnavailable, match="not-a-folder"):
        outpost_audit.Trail(blocker / "trail.jsonl").append(story())


def test_the_report_selects_by_time_client_and_app(trail):
    records = outpost_audit.Trail(trail).records()
    later = outpost_audit.select(records, since="2026-12-01T11:30:00")
    assert {entry["seq"] for entry in later} == {3, 4, 7, 8}
    # Refused announcements name no app they could be trusted for: every app's report shows them.
    assert {entry["kind"] for entry in outpost_audit.select(records, app="other")} == {"security"}
    assert {entry["kind"] for entry in outpost_audit.select(records, client="client-2")} == {
        "security"
    }
    with pytest.raises(outpost_audit.BadTrail, match="since"):
        outpost_audit.select(records, since="yesterday")


def test_the_report_shows_timeline_rollbacks_and_refusals(trail):
    text = outpost_audit.render(outpost_audit.Trail(trail).records(), "text")
    assert " client-1:" in text
    assert "canary: client-1 did not go live on 1.1.0" in text
    assert "headers: X-Outpost-Signature does not match the body" in text
    page = outpost_audit.render(outpost_audit.Trail(trail).records(), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "http" not in page, "the page loads nothing from elsewhere"
    assert page.count('<tr class="rollback"') == 2
    rows = list(csv.DictReader(io.StringIO(outpost_audit.render(story_records(trail), "csv"))))
    assert [row["seq"] for row in rows] == [str(n) for n in range(1, 9)]
    assert (rows[0]["release"], rows[0]["user"]) == ("1.0.0", "ops")
    assert (rows[2]["result"], rows[2]["release"]) == ("False", "1.1.0")


def story_records(trail):
    return outpost_audit.Trail(trail).records()


def test_outpost_audit_verify_exits_1_naming_the_record(trail, capsys):
    assert main(["audit", "verify", "--trail", str(trail)]) == 0
    assert "8 records, ok" in capsys.readouterr().out
    text = lines(trail)
    del text[1]
    trail.write_text("\n".join(text) + "\n")
    assert main(["audit", "verify", "--trail", str(trail)]) == 1
    assert (
        "TAMPERED: record(s) seq 2 removed before record seq 3 (line 2)" in capsys.readouterr().out
    )


def test_outpost_audit_report_names_a_bad_argument(trail, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "report", "--trail", str(trail), "--since", "last week"])
    assert stopped.value.code == 2
    assert "--since" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "report", "--trail", str(trail / "missing")])
    assert "--trail" in capsys.readouterr().err


@pytest.mark.parametrize("out", [".", "missing/report.txt"])
def test_outpost_audit_report_names_out_when_it_cannot_write(trail, tmp_path, capsys, out):
    """--out /tmp said '[Errno 21] Is a directory: /tmp' without naming --out."""
    target = tmp_path / out

    status = main(["audit", "report", "--trail", str(trail), "--out", str(target)])

    assert status == 1
    assert f"outpost: error: --out: cannot write {target} (" in capsys.readouterr().err


def test_remediations_and_alerts_are_recorded_with_client_app_and_reason(tmp_path):
    path = tmp_path / "trail.jsonl"
    outpost_audit.Trail(path).append(
        [
            outpost_audit.record_from_event(
                "outpost/remediation/client-3/hello/rollback",
                {"reason": "still unhealthy after a restart", "version": "1.3.0"},
            ),
            outpost_audit.record_from_event(
                "outpost/alert/client-3/hello", {"reason": "max_actions reached"}
            ),
        ]
    )
    records = outpost_audit.Trail(path).records()
    assert [(e["kind"], e["minion"], e["app"]) for e in records] == [
        ("remediation", "client-3", "hello"),
        ("alert", "client-3", "hello"),
    ]
    (rollback,) = outpost_audit.build_report(records)["rollbacks"]
    assert rollback["clients"] == "client-3"
    assert rollback["reason"] == "still unhealthy after a restart"
    assert rollback["source"] == "remediation"


def test_client_and_winrm_events_name_the_client():
    missing = outpost_audit.record_from_event("outpost/client/client-2/missing", {})
    bootstrap = outpost_audit.record_from_event(
        "outpost/winrm/win-1/bootstrapped", {"step": "install"}
    )
    assert (missing["kind"], missing["minion"], missing["function"]) == (
        "client",
        "client-2",
        "client missing",
    )
    assert (bootstrap["kind"], bootstrap["minion"]) == ("winrm", "win-1")
