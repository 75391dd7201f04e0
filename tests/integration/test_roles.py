"""
Roles through Salt's external_auth (the ``file`` eauth: a user file of SHA-256 digests) on a real
master and salt-api: ops run states and outpost's app functions on clients; auditors read jobs
and the audit trail; CI has no Salt account, only the webhook. Each is refused the rest.
"""

import json
import time
import urllib.error
import urllib.request

import pytest


@pytest.fixture(scope="module")
def salt_api(salt_master):
    factory = salt_master.salt_api_daemon()
    with factory.started():
        yield factory


class Api:
    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}"

    def post(self, path, body, token=None):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=90) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    def login(self, username, password):
        status, answer = self.post(
            "/login", {"username": username, "password": password, "eauth": "file"}
        )
        return status, (answer["return"][0]["token"] if status == 200 else None)

    def call(self, token, **lowstate):
        return self.post("/", [lowstate], token=token)


@pytest.fixture(scope="module")
def api(salt_api, api_port):
    client = Api(api_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(client.url + "/", timeout=5).close()
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.5)
    return client


@pytest.fixture(scope="module")
def tokens(api, role_passwords, salt_minion):
    found = {}
    for user in ("ops", "auditor"):
        status, token = api.login(user, role_passwords[user])
        assert status == 200, (user, status, token)
        found[user] = token
    return found


def allowed(answer):
    status, body = answer
    return status == 200 and isinstance(body, dict)


def test_ops_run_states_and_app_functions_on_clients(api, tokens, salt_minion):
    answer = api.call(
        tokens["ops"],
        client="local",
        tgt=salt_minion.id,
        fun="shiv_app.list_releases",
        arg=["never-installed"],
    )
    assert allowed(answer), answer
    assert salt_minion.id in answer[1]["return"][0]

    applied = api.call(
        tokens["ops"],
        client="local",
        tgt=salt_minion.id,
        fun="state.apply",
        kwarg={"mods": "outpost.apps", "test": True},
    )
    assert allowed(applied), applied


@pytest.mark.parametrize(
    "lowstate",
    [
        {"client": "local", "tgt": "client-1", "fun": "cmd.run", "arg": ["id"]},
        {"client": "local", "tgt": "client-1", "fun": "test.ping"},
        {"client": "runner", "fun": "outpost_release.halt", "rollout_id": 1},
        {"client": "runner", "fun": "outpost_audit.report"},
        {"client": "wheel", "fun": "key.delete", "match": "client-1"},
    ],
    ids=["cmd.run", "test.ping", "halt a rollout", "read the trail", "delete a key"],
)
def test_ops_are_refused_anything_else(api, tokens, lowstate):
    status, body = api.call(tokens["ops"], **lowstate)
    # 400: salt-api's wheel client is disabled for everyone (netapi_enable_clients).
    assert status in ((400, 401) if lowstate["client"] == "wheel" else (401, 403)), (status, body)


def test_auditors_read_jobs_and_the_trail(api, tokens):
    jobs = api.call(tokens["auditor"], client="runner", fun="jobs.list_jobs")
    assert allowed(jobs), jobs
    verdict = api.call(tokens["auditor"], client="runner", fun="outpost_audit.verify")
    assert allowed(verdict), verdict
    assert verdict[1]["return"][0]["ok"] is True
    report = api.call(tokens["auditor"], client="runner", fun="outpost_audit.report")
    assert allowed(report), report
    assert "Release timeline per client" in report[1]["return"][0]


@pytest.mark.parametrize(
    "lowstate",
    [
        {"client": "local", "tgt": "client-1", "fun": "test.ping"},
        {"client": "local", "tgt": "client-1", "fun": "state.apply", "arg": ["outpost.apps"]},
        {"client": "local", "tgt": "client-1", "fun": "shiv_app.remove_app", "arg": ["hello"]},
        {"client": "runner", "fun": "outpost_release.receive", "body": "{}", "headers": {}},
        {"client": "wheel", "fun": "key.list_all"},
    ],
    ids=["test.ping", "state.apply", "remove an app", "announce a release", "list keys"],
)
def test_auditors_are_refused_anything_else(api, tokens, lowstate):
    status, body = api.call(tokens["auditor"], **lowstate)
    assert status in ((400, 401) if lowstate["client"] == "wheel" else (401, 403)), (status, body)


def test_ci_has_no_salt_account_only_the_webhook(api, role_passwords):
    status, token = api.login("ci", role_passwords["ci"])
    if status == 200:
        refused = api.call(token, client="local", tgt="client-1", fun="test.ping")
        assert refused[0] in (401, 403), refused
        refused = api.call(token, client="runner", fun="jobs.list_jobs")
        assert refused[0] in (401, 403), refused
    else:
        assert status == 401

    hook = urllib.request.Request(api.url + "/hook/outpost/release", data=b"{}", method="POST")
    with urllib.request.urlopen(hook, timeout=30) as answer:
        assert answer.status == 200


def test_outpost_logs_json_and_refusals_reach_the_security_stream(api, audit_dir):
    """The unsigned announcement of the test above: a JSON log line and a security event."""
    wanted = "refused a release announcement: headers:"
    deadline = time.monotonic() + 60
    logged = []
    while time.monotonic() < deadline and not [e for e in logged if wanted in e["message"]]:
        time.sleep(0.5)
        path = audit_dir / "outpost.jsonl"
        logged = (
            [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        )
    (line, *_) = [entry for entry in logged if wanted in entry["message"]]
    assert line["level"] == "warning"
    assert line["logger"].endswith("outpost_release")
    assert set(line) >= {"time", "level", "logger", "process", "message"}

    security = [json.loads(x) for x in (audit_dir / "security.jsonl").read_text().splitlines()]
    assert any(event["event"] == "security/release-refused" for event in security)


def test_a_wrong_password_is_refused_and_lands_on_the_security_stream(
    api, role_passwords, audit_dir
):
    assert api.login("ops", "not-the-password")[0] == 401
    status, body = api.post(
        "/run",
        [
            {
                "client": "local",
                "tgt": "client-1",
                "fun": "test.ping",
                "username": "ops",
                "password": "not-the-password-either",
                "eauth": "file",
            }
        ],
    )
    assert status == 401, (status, body)

    security = audit_dir / "security.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = (
            [json.loads(line) for line in security.read_text().splitlines()]
            if security.exists()
            else []
        )
        if any(event["event"] == "auth-failure" for event in events):
            break
        time.sleep(0.5)
    assert any(event["event"] == "auth-failure" for event in events), events
    assert "not-the-password" not in security.read_text()
    kept = security.read_text() + (audit_dir / "trail.jsonl").read_text()
    for password in role_passwords.values():
        assert password not in kept


def test_the_salt_cli_with_eauth_lets_ops_run_app_functions_and_nothing_else(
    salt_cli, role_passwords
):
    as_ops = ["-a", "file", "--username=ops", f"--password={role_passwords['ops']}"]
    allowed_call = salt_cli.run(
        *as_ops, "shiv_app.list_releases", "never-installed", minion_tgt="client-1"
    )
    assert allowed_call.returncode == 0, allowed_call

    refused = salt_cli.run(*as_ops, "cmd.run", "id", minion_tgt="client-1")
    assert refused.returncode != 0 or "Authorization error" in refused.stdout + refused.stderr
    assert "uid=" not in refused.stdout
