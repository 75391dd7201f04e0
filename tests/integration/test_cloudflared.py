"""
cloudflared on a real minion: the connector (a stand-in, tests/standins/cloudflared.py) installed
from the master's fileserver by sha256, configured, run by the real supervisord, and reached
through the stand-in's edge, in front of the example app installed with shiv_app.
"""

import base64
import http.client
import json
import pathlib
import stat
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml

from tests.conftest import app_python, free_port
from tests.support.cloudflared import VERSIONS, hash_of, make_token, publish_standin
from tests.support.states import single

pytestmark = pytest.mark.slow

APP = "tunnelled"
HOST = "hello.outpost.test"
API_HOST = "api.outpost.test"
REMOTE_HOST = "remote.outpost.test"
CATCH_ALL = {"service": "http_status:404"}
SERVICE = "outpost-cloudflared"


def secret_parts(token):
    """The token, and the secret inside it, which must not turn up on its own either."""
    return [token, json.loads(base64.b64decode(token))["s"]]


def through_edge(edge, host, path="/"):
    """A request as Cloudflare's edge would send it down the tunnel."""
    connection = http.client.HTTPConnection("127.0.0.1", edge, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def converge(salt_call, function, **kwargs):
    result = single(salt_call, function, **kwargs)
    assert result["result"] is True, result
    return result


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin(ext_tree, short_root):
    """Two "releases" of cloudflared on the master, sharing one edge port."""
    edge = free_port()
    remote_ingress = short_root / "cloudflared-remote-ingress.json"
    releases = publish_standin(ext_tree, "cloudflared", edge, remote_ingress)
    return {"releases": releases, "edge": edge, "remote_ingress": remote_ingress}


@pytest.fixture(scope="module")
def tunnel():
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def tokens(tunnel):
    return {
        "first": make_token(tunnel),
        "second": make_token(tunnel),
        "remote": make_token(str(uuid.uuid4())),
    }


@pytest.fixture(scope="module")
def pillar_token(pillar_tree, salt_call, salt_minion):
    """Put a token in the client's pillar, the way an operator would."""
    top = pillar_tree / "top.sls"
    top_before = top.read_text()
    sls = pillar_tree / "outpost_cloudflared.sls"

    def put(token):
        sls.write_text(yaml.safe_dump({"outpost": {"cloudflared": {"token": token}}}))
        top.write_text(yaml.safe_dump({"base": {salt_minion.id: ["outpost_cloudflared"]}}))
        salt_call.run("saltutil.refresh_pillar", "wait=True")

    yield put
    top.write_text(top_before)
    sls.unlink(missing_ok=True)
    salt_call.run("saltutil.refresh_pillar", "wait=True")


@pytest.fixture(scope="module")
def app(salt_call, hello_releases):
    """The example app, as every test here reaches it; settings made the way app_settings makes
    them, for the whole module."""
    settings = {"python": app_python(), "port": free_port(), "health_timeout": 20}
    release = hello_releases["1.1.0"]
    converge(
        salt_call,
        "shiv_app.installed",
        name=APP,
        version=release["version"],
        source=release["source"],
        source_hash=release["sha256"],
        **settings,
    )
    return settings


@pytest.fixture(scope="module")
def metrics():
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def ingress(app):
    return [
        {"hostname": HOST, "app": APP},
        {"hostname": API_HOST, "path": "^/healthz", "service": f"http://127.0.0.1:{app['port']}"},
        CATCH_ALL,
    ]


@pytest.fixture(scope="module", autouse=True)
def connector_removed_afterwards(salt_call):
    yield
    salt_call.run("cloudflared.remove_service")


@pytest.fixture(scope="module")
def binary(salt_call, standin):
    converge(
        salt_call, "cloudflared.installed", name="cloudflared", **standin["releases"][VERSIONS[0]]
    )


@pytest.fixture
def connected(salt_call, binary, tunnel, tokens, pillar_token, metrics, ingress):
    """A locally managed tunnel, connected, whatever the test before left."""
    pillar_token(tokens["first"])
    local = {"ingress": ingress, "tunnel": tunnel, "metrics": metrics}
    converge(salt_call, "cloudflared.configured", name="cloudflared", **local)
    converge(salt_call, "cloudflared.running", name="cloudflared")
    return local


def config_file(outpost_root):
    return pathlib.Path(outpost_root, "cloudflared", "config.yml")


def supervisord_status(supervisord):
    return supervisord.ctl_run("status", SERVICE).stdout


# -- every state, both modes ---------------------------------------------------------------------


def test_each_state_predicts_applies_and_then_changes_nothing(
    salt_call,
    standin,
    app,
    tunnel,
    tokens,
    pillar_token,
    metrics,
    ingress,
    outpost_root,
    supervisord,
):
    pillar_token(tokens["first"])
    release = standin["releases"][VERSIONS[0]]
    binary_path = pathlib.Path(outpost_root, "bin", "cloudflared")
    local = {"ingress": ingress, "tunnel": tunnel, "metrics": metrics}

    predicted = single(salt_call, "cloudflared.installed", test=True, name="cf", **release)
    assert predicted["result"] is None, predicted
    assert predicted["changes"] == {"version": {"old": None, "new": VERSIONS[0]}}
    assert not binary_path.exists()
    installed = converge(salt_call, "cloudflared.installed", name="cf", **release)
    assert installed["changes"] == predicted["changes"]
    assert "sha256=" + hash_of(binary_path) == release["source_hash"]
    for test in (True, False):
        again = single(salt_call, "cloudflared.installed", test=test, name="cf", **release)
        assert (again["result"], again["changes"]) == (True, {}), again

    predicted = single(salt_call, "cloudflared.configured", test=True, name="cf", **local)
    assert predicted["result"] is None, predicted
    assert predicted["changes"] == {"config.yml": {"old": None, "new": "written"}}
    assert not config_file(outpost_root).exists()
    configured = converge(salt_call, "cloudflared.configured", name="cf", **local)
    assert configured["changes"] == predicted["changes"]
    written = yaml.safe_load(config_file(outpost_root).read_text())
    assert written["tunnel"] == tunnel
    assert written["ingress"][0] == {"hostname": HOST, "service": f"http://127.0.0.1:{app['port']}"}
    for test in (True, False):
        again = single(salt_call, "cloudflared.configured", test=test, name="cf", **local)
        assert (again["result"], again["changes"]) == (True, {}), again

    predicted = single(salt_call, "cloudflared.running", test=True, name="cf")
    assert predicted["result"] is None, predicted
    assert predicted["changes"]["token"] == "changed"
    assert predicted["changes"]["service"] == {"old": "ABSENT", "new": "RUNNING"}
    assert predicted["changes"]["command"]["new"][-1] == "run"
    assert "no such process" in supervisord_status(supervisord)
    running = converge(salt_call, "cloudflared.running", name="cf")
    assert running["changes"] == predicted["changes"]
    assert "RUNNING" in supervisord_status(supervisord)
    for test in (True, False):
        again = single(salt_call, "cloudflared.running", test=test, name="cf")
        assert (again["result"], again["changes"]) == (True, {}), again

    assert salt_call.run("cloudflared.check_ready").data["healthy"] is True
    assert through_edge(standin["edge"], HOST, "/healthz")[0] == 200


# -- through the tunnel --------------------------------------------------------------------------


def test_a_request_through_the_edge_reaches_the_app_and_other_hosts_get_the_catch_all(
    connected, standin
):
    edge = standin["edge"]

    status, body = through_edge(edge, HOST, "/healthz")
    assert status == 200
    assert json.loads(body)["version"] == "1.1.0"
    assert through_edge(edge, HOST.upper(), "/")[1].startswith("outpost hello 1.1.0")
    assert through_edge(edge, API_HOST, "/healthz")[0] == 200
    # The API host only has a rule for /healthz: everything else falls through to the catch-all.
    assert through_edge(edge, API_HOST, "/")[0] == 404
    assert through_edge(edge, "nobody.outpost.test", "/healthz") == (404, "")


def test_an_app_installed_later_is_reached_by_its_name(
    salt_call, connected, standin, hello_releases, app_settings
):
    release = hello_releases["1.0.0"]
    converge(
        salt_call,
        "shiv_app.installed",
        name="tunnelled-two",
        version=release["version"],
        source=release["source"],
        source_hash=release["sha256"],
        **app_settings,
    )
    rules = [{"hostname": "two.outpost.test", "app": "tunnelled-two"}, *connected["ingress"]]

    converge(salt_call, "cloudflared.configured", name="cf", **dict(connected, ingress=rules))
    restarted = converge(salt_call, "cloudflared.running", name="cf")

    assert restarted["changes"] == {"restart": "config.yml changed since the connector started"}
    status, body = through_edge(standin["edge"], "two.outpost.test", "/healthz")
    assert (status, json.loads(body)["version"]) == (200, "1.0.0")
    assert json.loads(through_edge(standin["edge"], HOST, "/healthz")[1])["version"] == "1.1.0"
    converge(salt_call, "shiv_app.absent", name="tunnelled-two")


# -- ingress refused -----------------------------------------------------------------------------


@pytest.mark.parametrize("test", [True, False], ids=["test", "apply"])
@pytest.mark.parametrize(
    ("case", "index"),
    [
        ("no catch-all", 1),
        ("catch-all in the middle", 1),
        ("shadowed", 1),
        ("unanchored path", 0),
        ("localhost origin", 0),
        ("another port than the app's", 0),
    ],
)
def test_a_bad_ingress_list_is_refused_naming_the_rule_and_the_config_stays(
    salt_call, connected, outpost_root, app, case, index, test
):
    port = app["port"]
    rules = {
        "no catch-all": [{"hostname": HOST, "app": APP}, {"hostname": API_HOST, "app": APP}],
        "catch-all in the middle": [{"hostname": HOST, "app": APP}, CATCH_ALL, CATCH_ALL],
        "shadowed": [
            {"hostname": "*.outpost.test", "app": APP},
            {"hostname": HOST, "path": "^/healthz", "app": APP},
            CATCH_ALL,
        ],
        "unanchored path": [{"hostname": HOST, "path": "/healthz", "app": APP}, CATCH_ALL],
        "localhost origin": [{"hostname": HOST, "service": f"http://localhost:{port}"}, CATCH_ALL],
        "another port than the app's": [
            {"hostname": HOST, "app": APP, "service": f"http://127.0.0.1:{port + 1}"},
            CATCH_ALL,
        ],
    }[case]
    path = config_file(outpost_root)
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    refused = single(
        salt_call, "cloudflared.configured", test=test, name="cf", **dict(connected, ingress=rules)
    )

    assert refused["result"] is False, refused
    assert f"ingress[{index}]: " in refused["comment"]
    assert refused["changes"] == {}
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert salt_call.run("cloudflared.check_ready").data["healthy"] is True


# -- the token -----------------------------------------------------------------------------------


def leaks(secrets, texts):
    """Which of ``texts`` (name: text) hold any of ``secrets``."""
    return sorted(name for name, text in texts.items() if any(s in text for s in secrets))


def places_anyone_looks(salt_master, salt_minion, supervisord, outpost_root, events):
    logs = {
        "minion log": salt_minion.config["log_file"],
        "master log": salt_master.config["log_file"],
        "supervisord log": supervisord.root / "supervisord.log",
    }
    logs.update(
        {
            f"cloudflared log {path.name}": path
            for path in pathlib.Path(outpost_root, "cloudflared", "logs").glob("*")
        }
    )
    texts = {name: pathlib.Path(path).read_text(errors="replace") for name, path in logs.items()}
    # What every local user can list: command lines (environments are the owner's only).
    texts["ps"] = subprocess.run(
        ["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True
    ).stdout
    texts["events"] = "\n".join(repr(event.full_data) for event in events)
    return texts


def test_a_remotely_managed_tunnel_gets_its_token_only_through_its_protected_environment(
    salt_call,
    salt_master,
    salt_minion,
    event_listener,
    supervisord,
    binary,
    standin,
    app,
    tokens,
    pillar_token,
    metrics,
    outpost_root,
):
    start = time.time()
    token = tokens["remote"]
    standin["remote_ingress"].write_text(
        json.dumps(
            [{"hostname": REMOTE_HOST, "service": f"http://127.0.0.1:{app['port']}"}, CATCH_ALL]
        )
    )
    pillar_token(token)
    remote = {"ingress": [], "metrics": metrics}

    returns = [
        single(salt_call, "cloudflared.configured", test=True, name="cf", **remote),
        converge(salt_call, "cloudflared.configured", name="cf", **remote),
        single(salt_call, "cloudflared.running", test=True, name="cf"),
        converge(salt_call, "cloudflared.running", name="cf"),
        single(salt_call, "cloudflared.running", name="cf"),
    ]
    jobs = [
        salt_call.run("cloudflared.get_status").data,
        salt_call.run("cloudflared.verify_service").data,
        salt_call.run("cloudflared.plan_service").data,
    ]

    assert "ingress" not in yaml.safe_load(config_file(outpost_root).read_text())
    assert returns[2]["result"] is None
    assert returns[3]["changes"]["token"] == "changed"
    assert returns[3]["changes"]["credentials"] == "removed"
    assert returns[4]["changes"] == {}
    status, body = through_edge(standin["edge"], REMOTE_HOST, "/healthz")
    assert (status, json.loads(body)["version"]) == (200, "1.1.0")
    # cloudflared reads TUNNEL_TOKEN from its environment, set from a definition only its owner
    # reads; a locally managed tunnel's credentials file is gone.
    environ = pathlib.Path(f"/proc/{jobs[0]['pid']}/environ").read_bytes().split(b"\0")
    assert f"TUNNEL_TOKEN={token}".encode() in environ
    program = pathlib.Path(supervisord.include_dir, f"{SERVICE}.conf")
    assert stat.S_IMODE(program.stat().st_mode) == 0o600
    assert not pathlib.Path(outpost_root, "cloudflared", "credentials.json").exists()
    command = jobs[1]["command"]
    assert command[command.index("--config") + 1] == str(config_file(outpost_root))

    events = event_listener.get_events([(salt_master.id, "*")], after_time=start)
    assert any("/ret/" in event.tag for event in events), "the job returns reach the master"
    texts = places_anyone_looks(salt_master, salt_minion, supervisord, outpost_root, events)
    texts["state returns"] = json.dumps(returns)
    texts["job returns"] = json.dumps(jobs)
    assert leaks(secret_parts(token), texts) == []


def test_a_new_token_is_reported_only_as_changed_and_never_shown(
    salt_call,
    salt_master,
    salt_minion,
    event_listener,
    supervisord,
    connected,
    tokens,
    pillar_token,
    outpost_root,
    standin,
):
    start = time.time()
    pillar_token(tokens["second"])

    predicted = single(salt_call, "cloudflared.running", test=True, name="cf")
    applied = converge(salt_call, "cloudflared.running", name="cf")

    assert predicted["changes"] == applied["changes"] == {"token": "changed"}
    credentials = pathlib.Path(outpost_root, "cloudflared", "credentials.json")
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text())["TunnelSecret"] == secret_parts(tokens["second"])[1]
    assert through_edge(standin["edge"], HOST, "/healthz")[0] == 200
    events = event_listener.get_events([(salt_master.id, "*")], after_time=start)
    texts = places_anyone_looks(salt_master, salt_minion, supervisord, outpost_root, events)
    texts["state returns"] = json.dumps([predicted, applied])
    secrets = secret_parts(tokens["first"]) + secret_parts(tokens["second"])
    assert leaks(secrets, texts) == []


@pytest.mark.parametrize("test", [True, False], ids=["test", "apply"])
def test_a_badly_shaped_token_is_refused_naming_token_without_showing_it(
    salt_call, connected, pillar_token, test
):
    pid = salt_call.run("cloudflared.get_status").data["pid"]
    bad = base64.b64encode(b'{"a": "x", "t": "not-a-tunnel", "s": "c2VjcmV0"}').decode()
    pillar_token(bad)

    refused = single(salt_call, "cloudflared.running", test=test, name="cf")

    assert refused["result"] is False, refused
    assert "token: " in refused["comment"]
    assert bad not in json.dumps(refused)
    assert salt_call.run("cloudflared.get_status").data["pid"] == pid


def test_the_registered_command_line_has_the_config_and_no_token(
    salt_call, connected, supervisord, outpost_root, tokens
):
    program = pathlib.Path(supervisord.include_dir, f"{SERVICE}.conf").read_text()
    (command_line,) = [line for line in program.splitlines() if line.startswith("command=")]

    verified = salt_call.run("cloudflared.verify_service")

    assert verified.returncode == 0, verified
    assert f"--config {config_file(outpost_root)}" in command_line
    assert "--no-autoupdate" in command_line
    assert "--token" not in command_line
    assert not any(secret in program for secret in secret_parts(tokens["first"]))


# -- readiness -----------------------------------------------------------------------------------


def test_a_connector_that_lost_its_edge_is_unhealthy_and_the_next_run_reconnects_it(
    salt_call, connected, metrics, standin
):
    request = urllib.request.Request(f"http://{metrics}/standin/lose-edge", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass

    ready = salt_call.run("cloudflared.check_ready").data
    status = salt_call.run("cloudflared.get_status").data

    assert ready["healthy"] is False
    assert "HTTP 503" in ready["reason"]
    assert ready["ready_connections"] == 0
    assert (status["service"], status["healthy"]) == ("RUNNING", False)
    assert through_edge(standin["edge"], HOST, "/healthz")[0] == 530

    predicted = single(salt_call, "cloudflared.running", test=True, name="cf")
    assert predicted["result"] is None
    assert predicted["changes"]["ready"]["new"] == "ready"
    assert salt_call.run("cloudflared.check_ready").data["healthy"] is False
    reconnected = converge(salt_call, "cloudflared.running", name="cf")
    assert reconnected["changes"] == predicted["changes"]
    assert salt_call.run("cloudflared.check_ready").data["healthy"] is True
    assert through_edge(standin["edge"], HOST, "/healthz")[0] == 200


# -- the binary ----------------------------------------------------------------------------------


def test_a_new_binary_replaces_the_old_and_restarts_the_connector(
    salt_call, connected, standin, outpost_root
):
    release = standin["releases"][VERSIONS[1]]
    pid = salt_call.run("cloudflared.get_status").data["pid"]

    predicted = single(salt_call, "cloudflared.installed", test=True, name="cf", **release)
    assert predicted["result"] is None
    assert predicted["changes"] == {
        "version": {"old": VERSIONS[0], "new": VERSIONS[1]},
        "restarted": SERVICE,
    }
    assert salt_call.run("cloudflared.get_status").data["pid"] == pid
    installed = converge(salt_call, "cloudflared.installed", name="cf", **release)

    assert installed["changes"] == predicted["changes"]
    status = salt_call.run("cloudflared.get_status").data
    assert (status["version"], status["healthy"]) == (VERSIONS[1], True)
    assert status["pid"] != pid
    again = single(salt_call, "cloudflared.installed", name="cf", **release)
    assert again["changes"] == {}


def test_a_binary_with_the_wrong_sha256_is_refused_and_the_old_one_stays(
    salt_call, connected, standin, outpost_root
):
    binary_path = pathlib.Path(outpost_root, "bin", "cloudflared")
    before = binary_path.read_bytes()
    release = dict(standin["releases"][VERSIONS[0]], source_hash="sha256=" + "0" * 64)

    refused = single(salt_call, "cloudflared.installed", name="cf", **release)

    assert refused["result"] is False
    assert "source_hash" in refused["comment"]
    assert binary_path.read_bytes() == before
    assert list(pathlib.Path(outpost_root, "bin", ".staging").iterdir()) == []
