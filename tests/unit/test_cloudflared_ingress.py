"""
Unit tests of what outpost checks before cloudflared's config.yml is written: the ingress rules,
the metrics address, the tunnel token's shape, and the config.yml that results.
"""

import base64
import json
import pathlib
import subprocess
import sys
import uuid

import pytest
import yaml
from salt.exceptions import SaltInvocationError

UTILS = pathlib.Path(__file__).resolve().parents[2] / "_utils"
# Salt's loader puts _utils on sys.path while it loads; the tests have to do it themselves.
sys.path.insert(0, str(UTILS))

import outpost_cloudflared as cf  # noqa: E402 - importable only once _utils is on sys.path

APPS = {"hello": 8080, "shop": 8081}
CATCH_ALL = {"service": "http_status:404"}


def make_token(secret_bytes=32, **changes):
    fields = {
        "a": "6b1c1e5a0e0c4f3e9d2b7a8c9d0e1f2a",
        "t": str(uuid.uuid4()),
        "s": base64.b64encode(b"k" * secret_bytes).decode(),
    }
    fields.update(changes)
    fields = {key: value for key, value in fields.items() if value is not None}
    return base64.b64encode(json.dumps(fields).encode()).decode()


def refused(rules, apps=APPS):
    with pytest.raises(SaltInvocationError) as raised:
        cf.validate_ingress(rules, apps)
    return str(raised.value)


# -- valid lists ---------------------------------------------------------------------------------


def test_a_typical_list_passes_and_apps_become_their_origins():
    rules = [
        {"hostname": "hello.example.com", "path": "^/api/", "app": "hello"},
        {"hostname": "hello.example.com", "service": "http://127.0.0.1:8080"},
        {"hostname": "Shop.Example.com", "app": "shop", "originRequest": {"connectTimeout": "5s"}},
        {"hostname": "admin.example.com", "service": "http_status:403"},
        {"hostname": "*.example.com", "service": "http://127.0.0.1:8080/"},
        CATCH_ALL,
    ]

    checked = cf.validate_ingress(rules, APPS)

    assert checked[0] == {
        "hostname": "hello.example.com",
        "path": "^/api/",
        "service": "http://127.0.0.1:8080",
    }
    assert checked[2]["hostname"] == "shop.example.com"
    assert checked[2]["originRequest"] == {"connectTimeout": "5s"}
    assert all("app" not in rule for rule in checked)
    assert checked[-1] == CATCH_ALL


def test_a_lone_catch_all_passes():
    assert cf.validate_ingress([{"service": "http_status:503"}], {}) == [
        {"service": "http_status:503"}
    ]


def test_a_wildcard_host_catch_all_passes():
    rules = [{"hostname": "a.example.com", "app": "hello"}, {"hostname": "*", **CATCH_ALL}]
    assert len(cf.validate_ingress(rules, APPS)) == 2


def test_a_wildcard_does_not_cover_its_apex():
    """cloudflared matches *.example.com as a suffix with its dot: example.com is not in it."""
    rules = [
        {"hostname": "*.example.com", "app": "hello"},
        {"hostname": "example.com", "app": "shop"},
        CATCH_ALL,
    ]
    assert len(cf.validate_ingress(rules, APPS)) == 3


def test_different_paths_of_one_host_pass():
    rules = [
        {"hostname": "a.example.com", "path": "^/api/", "app": "hello"},
        {"hostname": "a.example.com", "path": "^/shop/", "app": "shop"},
        {"hostname": "a.example.com", "app": "hello"},
        CATCH_ALL,
    ]
    assert len(cf.validate_ingress(rules, APPS)) == 4


def test_without_known_apps_any_loopback_port_passes():
    rules = [{"hostname": "a.example.com", "service": "http://127.0.0.1:9999"}, CATCH_ALL]
    assert cf.validate_ingress(rules, {})[0]["service"] == "http://127.0.0.1:9999"


# -- the catch-all -------------------------------------------------------------------------------


def test_no_catch_all_names_the_last_rule():
    message = refused(
        [
            {"hostname": "a.example.com", "app": "hello"},
            {"hostname": "b.example.com", "app": "shop"},
        ]
    )
    assert message.startswith("ingress[1]: the last rule must be a catch-all")


def test_a_path_only_last_rule_is_no_catch_all():
    message = refused([{"hostname": "a.example.com", "app": "hello"}, {"path": "^/", **CATCH_ALL}])
    assert message.startswith("ingress[1]: the last rule must be a catch-all")


def test_a_catch_all_in_the_middle_is_named():
    message = refused([{"hostname": "a.example.com", "app": "hello"}, CATCH_ALL, CATCH_ALL])
    assert message.startswith("ingress[1]: a catch-all")


def test_an_empty_list_is_refused():
    assert refused([]).startswith("ingress: expected a list")
    assert refused({"hostname": "a"}).startswith("ingress: expected a list")


# -- shadowed rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ({"hostname": "a.example.com"}, {"hostname": "a.example.com", "path": "^/api/"}),
        (
            {"hostname": "a.example.com", "path": "^/api/"},
            {"hostname": "a.example.com", "path": "^/api/"},
        ),
        ({"hostname": "*.example.com"}, {"hostname": "a.example.com"}),
        ({"hostname": "*.example.com"}, {"hostname": "x.a.example.com", "path": "^/"}),
        ({"hostname": "A.example.com"}, {"hostname": "a.example.com"}),
        ({"path": "^/api/"}, {"hostname": "a.example.com", "path": "^/api/"}),
    ],
    ids=["host-before-path", "identical", "wildcard", "wildcard-deeper", "case", "any-host-path"],
)
def test_a_shadowed_rule_is_named_with_the_rule_that_hides_it(earlier, later):
    rules = [
        {"hostname": "z.example.org", "app": "shop"},
        {**earlier, "app": "hello"},
        {**later, "app": "shop"},
        CATCH_ALL,
    ]

    message = refused(rules)

    assert message.startswith("ingress[2]: never reached, since ingress[1]")


def test_a_path_rule_before_its_host_rule_is_not_shadowed_the_other_way():
    rules = [
        {"hostname": "a.example.com", "path": "^/api/", "app": "hello"},
        {"hostname": "a.example.com", "app": "shop"},
        CATCH_ALL,
    ]
    assert len(cf.validate_ingress(rules, APPS)) == 3


# -- paths and host names ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/", "api", ".*"])
def test_an_unanchored_path_is_refused(path):
    message = refused([{"hostname": "a.example.com", "path": path, "app": "hello"}, CATCH_ALL])
    assert message.startswith("ingress[0]: path")
    assert "anchored with ^" in message


def test_a_path_that_is_no_regular_expression_is_refused():
    message = refused(
        [{"hostname": "a.example.com", "app": "hello"}, {"path": "^/(", "app": "hello"}, CATCH_ALL]
    )
    assert message.startswith("ingress[1]: path '^/(' is not a regular expression")


@pytest.mark.parametrize(
    "hostname", ["a.example.com:443", "a.*.example.com", "exa mple.com", "-a.example.com", ""]
)
def test_a_bad_hostname_is_refused(hostname):
    message = refused([{"hostname": hostname, "app": "hello"}, CATCH_ALL])
    assert message.startswith("ingress[0]: hostname")


def test_an_unknown_key_is_refused():
    message = refused([{"hostname": "a.example.com", "app": "hello", "url": "x"}, CATCH_ALL])
    assert message == "ingress[0]: unknown key 'url'"


def test_a_rule_that_is_not_a_mapping_is_refused():
    assert refused([CATCH_ALL, "http_status:404"]).startswith("ingress[1]: expected a mapping")


# -- origins -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    [
        "http://localhost:8080",
        "http://0.0.0.0:8080",
        "http://[::1]:8080",
        "http://192.168.1.5:8080",
        "http://127.0.0.1",
        "http://127.0.0.1:8080/app",
        "tcp://127.0.0.1:8080",
        "hello_world",
    ],
)
def test_an_origin_not_on_the_apps_literal_address_is_refused(service):
    message = refused([{"hostname": "a.example.com", "service": service}, CATCH_ALL])
    assert message.startswith(f"ingress[0]: service {service!r} must be http://127.0.0.1:<port>")


def test_localhost_gets_a_hint():
    message = refused(
        [{"hostname": "a.example.com", "service": "http://localhost:8080"}, CATCH_ALL]
    )
    assert "::1" in message


def test_an_origin_on_another_port_than_its_app_is_refused():
    rules = [
        {"hostname": "a.example.com", "app": "hello"},
        {"hostname": "b.example.com", "app": "hello", "service": "http://127.0.0.1:8081"},
        CATCH_ALL,
    ]
    message = refused(rules)
    assert message == (
        "ingress[1]: service http://127.0.0.1:8081 is not where hello listens (port 8080)"
    )


def test_an_origin_on_a_port_no_app_listens_on_is_refused():
    message = refused([{"hostname": "a.example.com", "service": "http://127.0.0.1:9"}, CATCH_ALL])
    assert message.startswith("ingress[0]: no outpost app on this client listens on port 9")


def test_an_unknown_app_is_refused():
    message = refused([{"hostname": "a.example.com", "app": "blog"}, CATCH_ALL])
    assert message.startswith("ingress[0]: app 'blog' is not an app outpost runs")


def test_a_rule_without_service_or_app_is_refused():
    assert refused([{"hostname": "a.example.com"}, CATCH_ALL]).startswith(
        "ingress[0]: service is required"
    )


# -- metrics, tunnel and token -------------------------------------------------------------------


@pytest.mark.parametrize("metrics", ["0.0.0.0:20241", "localhost:20241", "127.0.0.1", "x"])
def test_metrics_listen_on_loopback_only(metrics):
    with pytest.raises(SaltInvocationError, match="^metrics: "):
        cf.validate_metrics(metrics)


def test_a_tunnel_is_a_uuid():
    tunnel = str(uuid.uuid4())
    assert cf.validate_tunnel(tunnel.upper()) == tunnel
    with pytest.raises(SaltInvocationError, match="^tunnel: "):
        cf.validate_tunnel("my-tunnel")


def test_a_token_in_cloudflares_shape_is_read():
    token = make_token()
    fields = cf.parse_token(token + "\n")
    assert set(fields) == {"a", "t", "s"}


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'["a", "t", "s"]').decode(),
        make_token(s=None),
        make_token(t="not-a-uuid"),
        make_token(a=""),
        make_token(secret_bytes=8),
        make_token().rstrip("=") + "A",
    ],
    ids=["garbage", "not-json", "list", "no-secret", "bad-tunnel", "no-account", "short", "bits"],
)
def test_a_badly_shaped_token_is_refused_without_being_shown(token):
    with pytest.raises(SaltInvocationError) as raised:
        cf.parse_token(token)

    message = str(raised.value)
    assert message.startswith("token: ")
    assert token not in message
    # A chained exception would carry the decoding error, and with it a piece of the token.
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__


# -- config.yml ----------------------------------------------------------------------------------


def test_a_locally_managed_config_carries_tunnel_credentials_and_ingress(tmp_path):
    layout = cf.Layout(str(tmp_path))
    tunnel = str(uuid.uuid4())
    rules = cf.validate_ingress([{"hostname": "a.example.com", "app": "hello"}, CATCH_ALL], APPS)

    text = cf.render_config(layout, "127.0.0.1:20241", tunnel, rules)

    assert text.startswith("# Written by outpost")
    assert yaml.safe_load(text) == {
        "tunnel": tunnel,
        "credentials-file": layout.credentials_path,
        "metrics": "127.0.0.1:20241",
        "no-autoupdate": True,
        "ingress": [{"hostname": "a.example.com", "service": "http://127.0.0.1:8080"}, CATCH_ALL],
    }


def test_a_remotely_managed_config_has_no_ingress(tmp_path):
    text = cf.render_config(cf.Layout(str(tmp_path)), "127.0.0.1:20241")
    assert yaml.safe_load(text) == {"metrics": "127.0.0.1:20241", "no-autoupdate": True}


def test_config_changes_name_the_keys_that_differ(tmp_path):
    layout = cf.Layout(str(tmp_path))
    tunnel = str(uuid.uuid4())
    old = cf.render_config(layout, "127.0.0.1:20241", tunnel, [CATCH_ALL])
    new = cf.render_config(layout, "127.0.0.1:20242", tunnel, [CATCH_ALL])

    assert cf.config_changes(old, old) == {}
    assert cf.config_changes(old, new) == {
        "metrics": {"old": "127.0.0.1:20241", "new": "127.0.0.1:20242"}
    }
    assert cf.config_changes(None, new) == {"config.yml": {"old": None, "new": "written"}}
    assert "config.yml" in cf.config_changes(": not [yaml", new)


# -- the command line ----------------------------------------------------------------------------


def test_the_service_command_line_has_its_config_and_no_self_update(tmp_path):
    layout = cf.Layout(str(tmp_path))
    command = cf.service_command(layout, "127.0.0.1:20241")

    assert command == [
        layout.binary,
        "tunnel",
        "--no-autoupdate",
        "--config",
        layout.config_path,
        "--metrics",
        "127.0.0.1:20241",
        "run",
    ]
    assert cf.command_problems(command, layout) == []


def test_a_token_or_a_missing_config_on_the_command_line_is_a_problem(tmp_path):
    layout = cf.Layout(str(tmp_path))
    token = make_token()
    command = [layout.binary, "tunnel", "run", "--token", token]

    problems = cf.command_problems(command, layout)

    assert len(problems) == 3
    assert not any(token in problem for problem in problems)
    assert cf.command_problems([*cf.service_command(layout, "x"), token], layout)


@pytest.mark.parametrize(
    "args",
    [
        ["plain", "two words", ""],
        ['say "hi"', "back\\slash", "ends in a backslash\\"],
        ["C:\\Program Files\\outpost\\cloudflared\\config.yml", "--metrics", "127.0.0.1:1"],
        ['\\"', "\\\\\\", 'a\\\\"b'],
    ],
)
def test_windows_command_lines_split_back_into_their_arguments(args):
    assert cf.split_windows_args(subprocess.list2cmdline(args)) == args


# -- originRequest, paths matching everything, app ports (review finding 9) ---------------------


def test_harmless_origin_request_settings_pass():
    options = {
        "connectTimeout": "10s",
        "keepAliveTimeout": 90,
        "httpHostHeader": "hello.example.com",
        "originServerName": "hello.example.com",
        "disableChunkedEncoding": True,
        "noTLSVerify": False,
    }
    rules = [{"hostname": "a.example.com", "app": "hello", "originRequest": options}, CATCH_ALL]

    checked = cf.validate_ingress(rules, APPS)

    assert checked[0]["originRequest"] == options


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"bastionMode": True}, "bastionMode"),
        ({"proxyType": "socks"}, "proxyType"),
        ({"proxyAddress": "0.0.0.0"}, "proxyAddress"),
        ({"proxyPort": 1080}, "proxyPort"),
        ({"connectTimeout": "10s", "madeUp": 1}, "madeUp"),
        ({"noTLSVerify": True}, "noTLSVerify"),
        ({"connectTimeout": "soon"}, "connectTimeout"),
        ({"httpHostHeader": "a b"}, "httpHostHeader"),
    ],
)
def test_an_origin_request_setting_beyond_the_allow_list_is_refused(options, key):
    """bastionMode and proxyType: socks went through to config.yml unchecked."""
    rules = [
        {"hostname": "b.example.com", "app": "shop"},
        {"hostname": "a.example.com", "app": "hello", "originRequest": options},
        CATCH_ALL,
    ]

    assert refused(rules).startswith(f"ingress[1]: originRequest.{key}")


@pytest.mark.parametrize("path", ["^/", "^.*", "^", "^/.*$"])
def test_a_path_matching_every_path_counts_as_a_catch_all(path):
    """{hostname: '*', path: '^/'} hid every later rule and was not flagged."""
    rules = [
        {"hostname": "*", "path": path, "app": "hello"},
        {"hostname": "a.example.com", "app": "shop"},
        CATCH_ALL,
    ]

    assert refused(rules).startswith("ingress[0]: a catch-all")


def test_a_host_rule_with_a_path_matching_everything_shadows_that_host():
    rules = [
        {"hostname": "a.example.com", "path": "^/", "app": "hello"},
        {"hostname": "a.example.com", "path": "^/api/", "app": "shop"},
        CATCH_ALL,
    ]

    assert refused(rules).startswith("ingress[1]: never reached, since ingress[0]")


@pytest.mark.parametrize("port", ["abc", 0, 65536, True, "80 ", None, "²"])
def test_an_app_port_that_is_no_port_is_refused_naming_the_app(port):
    """apps={'hello': 'abc'} became service http://127.0.0.1:abc or a ValueError."""
    rules = [{"hostname": "a.example.com", "app": "hello"}, CATCH_ALL]

    assert refused(rules, {"hello": port}).startswith("apps: hello: port ")


def test_an_app_port_given_as_text_is_read_as_its_number():
    rules = [{"hostname": "a.example.com", "app": "hello"}, CATCH_ALL]

    assert cf.validate_ingress(rules, {"hello": "8080"})[0]["service"] == "http://127.0.0.1:8080"
