"""
``outpost audit`` against doctored trails: verify names every malformed line instead of crashing,
report refuses (or marks TAMPERED) a trail that does not verify and escapes everything in HTML,
and the CLI's trail code comes from the installed package only, never from extmods.
"""

import importlib.util
import json
import subprocess
import sys

import pytest

import outpost_audit
from outpost import trail as package_trail
from outpost.cli import main
from tests.conftest import REPO
from tests.unit.test_audit_trail import job_event, story

MARKUP = '1"><img src=x onerror=alert(1)>'


@pytest.fixture
def trail(tmp_path):
    path = tmp_path / "trail.jsonl"
    outpost_audit.Trail(path).append(story())
    return path


def replace_line(path, number, raw):
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = raw
    path.write_bytes(b"\n".join(lines))


def rewrite_record(path, number, **fields):
    """Line ``number`` with ``fields`` changed and its hash recomputed, as a forger would."""
    entry = json.loads(path.read_bytes().split(b"\n")[number - 1])
    entry.update(fields)
    entry["hash"] = outpost_audit.record_hash(entry)
    replace_line(path, number, json.dumps(entry).encode())


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"seq": 2, "note": "caf\xe9"}', "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b"{", "not JSON"),
    ],
)
def test_a_line_that_is_not_a_json_record_is_named_not_a_traceback(trail, capsys, raw, why):
    """A non-UTF-8 line raised UnicodeDecodeError out of verify."""
    replace_line(trail, 2, raw)
    assert main(["audit", "verify", "--trail", str(trail)]) == 1
    assert f"TAMPERED: line 2: malformed: {why} (changed)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"prev": []}, "'prev' is list, not str"),
        ({"hash": {"a": 1}}, "'hash' is dict, not str"),
        ({"seq": "2"}, "'seq' is str, not int"),
        ({"seq": True}, "'seq' is bool, not int"),
        ({"time": "yesterday"}, "'time' is not an ISO 8601 time"),
        ({"prev": "abc"}, "'prev' is not 64 hex digits"),
    ],
)
def test_a_record_with_a_field_of_the_wrong_type_is_named(trail, capsys, change, why):
    """ "prev": [] made verify crash with TypeError: unhashable type: 'list'."""
    entry = json.loads(trail.read_bytes().split(b"\n")[1])
    entry.update(change)
    replace_line(trail, 2, json.dumps(entry).encode())
    assert main(["audit", "verify", "--trail", str(trail)]) == 1
    assert f"TAMPERED: line 2: malformed: {why} (changed)" in capsys.readouterr().out


@pytest.mark.parametrize("key", ["seq", "prev", "hash", "time", "kind", "tag"])
def test_a_record_missing_a_key_is_named(trail, capsys, key):
    entry = json.loads(trail.read_bytes().split(b"\n")[2])
    del entry[key]
    replace_line(trail, 3, json.dumps(entry).encode())
    assert main(["audit", "verify", "--trail", str(trail)]) == 1
    assert f"TAMPERED: line 3: malformed: no {key!r} (changed)" in capsys.readouterr().out


def test_report_on_a_doctored_trail_exits_1_and_writes_no_report(trail, capsys):
    """A doctored trail used to report with exit status 0, as if nothing had happened."""
    rewrite_record(trail, 1, reason="nothing happened here")
    assert main(["audit", "report", "--trail", str(trail)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "TAMPERED: record seq 1 (line 1) was changed and rehashed" in err
    assert "--allow-unverified" in err


@pytest.mark.parametrize(
    ("fmt", "first", "body"),
    [
        ("text", "TAMPERED: the audit trail does not verify", "outpost audit report"),
        ("csv", "# TAMPERED: the audit trail does not verify", "seq,time,kind"),
    ],
)
def test_an_unverified_report_starts_with_a_tampered_banner(trail, capsys, fmt, first, body):
    rewrite_record(trail, 1, reason="nothing happened here")
    argv = ["audit", "report", "--trail", str(trail), "--format", fmt, "--allow-unverified"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(first)
    assert body in out


def test_an_unverified_html_report_has_a_banner_and_no_markup_from_the_trail(trail, tmp_path):
    """seq went into data-seq="..." unescaped: a forged seq put a script into the page."""
    rewrite_record(trail, 3, seq=MARKUP, user=MARKUP)
    page = tmp_path / "report.html"
    argv = ["audit", "report", "--trail", str(trail), "--format", "html", "--allow-unverified"]
    assert main([*argv, "--out", str(page)]) == 0
    text = page.read_text()
    assert '<p class="tampered">TAMPERED: the audit trail does not verify' in text
    assert "<img" not in text


def test_every_value_in_the_html_is_escaped_seq_too():
    record = outpost_audit.record_from_job_return(
        *job_event("1", "client-1", "state.sls", [], {}, success=False)
    )
    record.update(seq=MARKUP, app=MARKUP, release="1.0.0", result=False, user=MARKUP)
    page = outpost_audit.render([record], "html", title=MARKUP, problems=[MARKUP])
    assert "<img" not in page
    assert 'data-seq="1&quot;&gt;&lt;img' in page


def test_a_verified_report_has_no_banner(trail, capsys):
    assert main(["audit", "report", "--trail", str(trail)]) == 0
    assert "TAMPERED" not in capsys.readouterr().out


def test_the_salt_side_module_is_the_package_trail_not_a_copy():
    assert outpost_audit.verify is package_trail.verify
    assert outpost_audit.Trail is package_trail.Trail


def test_the_cli_never_loads_trail_code_from_extmods_or_utils(trail, tmp_path):
    """outpost audit loaded extmods/utils/outpost_audit.py, a file operators can change."""
    planted = tmp_path / "extmods" / "utils"
    planted.mkdir(parents=True)
    (planted / "outpost_audit.py").write_text("raise SystemExit('planted code ran')\n")
    probe = (
        "import sys\n"
        "from outpost.cli import main\n"
        f"status = main(['audit', 'verify', '--trail', {str(trail)!r}])\n"
        "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
        "print('LOADED', [f for f in files if 'extmods' in f or '_utils' in f])\n"
        "sys.exit(status)\n"
    )
    env = {"PYTHONPATH": str(planted), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "records, ok" in done.stdout
    assert "LOADED []" in done.stdout


def test_the_cli_has_no_option_to_load_trail_code_from_a_folder(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--utils", "/var/cache/salt/master/extmods/utils"])
    assert "unrecognized arguments: --utils" in capsys.readouterr().err


def test_the_runners_report_on_a_doctored_trail_carries_the_banner(trail, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "outpost_audit_runner", REPO / "_runners" / "outpost_audit.py"
    )
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    runner.__opts__ = {
        "cachedir": str(tmp_path / "cache"),
        "log_file": str(tmp_path / "master.log"),
        "outpost": {"audit": {"trail": str(trail)}},
    }
    assert "TAMPERED" not in runner.report()
    rewrite_record(trail, 2, reason="nothing happened here")
    assert runner.report().startswith("TAMPERED: the audit trail does not verify")
