"""The supervisord program file: what supervisord's own parsers read back from it."""

import pytest
from supervisor.datatypes import dict_of_key_value_pairs
from supervisor.options import UnhosedConfigParser

import outpost_service


def spec(**env):
    return outpost_service.ServiceSpec(
        name="outpost-hello",
        display_name="outpost hello",
        command=[
            "/usr/bin/python3",
            "/opt/outpost/apps/hello/releases/1.0.0/app.pyz",
            "--x",
            "a b",
        ],
        env=env,
        workdir="/opt/outpost/apps/hello/releases/1.0.0",
        log_dir="/opt/outpost/apps/hello/logs",
    )


def backend():
    return outpost_service.SupervisordBackend("/etc/s.conf", "/etc/s.d")


def environment_line(rendered):
    """The environment option as supervisord's own INI reader hands it over."""
    parser = UnhosedConfigParser()
    parser.read_string(rendered)
    return parser.saneget("program:outpost-hello", "environment")


def test_values_with_quotes_commas_and_percent_survive_supervisord_parsing():
    env = {"A": 'say "hi", 100%', "B": "it's", "C": r"back\slash", "D": "k=v,w"}

    parsed = dict_of_key_value_pairs(environment_line(backend().render(spec(**env))))

    assert parsed == env


@pytest.mark.parametrize("value", ["both ' and \"", '"leading', "trailing'"])
def test_values_supervisord_would_mangle_are_refused_naming_the_variable(value):
    with pytest.raises(outpost_service.ServiceError, match=r"^env: the value of SECRET "):
        backend().validate(spec(SECRET=value))


@pytest.mark.parametrize("value", ["abc #def", "x ;y", "tab\t;z"])
def test_inline_comment_markers_after_white_space_are_refused(value):
    """supervisord's INI reader cut such values short, and the rest of the line with them."""
    with pytest.raises(outpost_service.ServiceError, match=r"^env: the value of TOKEN "):
        backend().validate(spec(TOKEN=value))


def test_comment_markers_without_white_space_are_kept():
    env = {"A": "a;b", "B": "c#d"}

    parsed = dict_of_key_value_pairs(environment_line(backend().render(spec(**env))))

    assert parsed == env


def test_the_app_log_rotates_with_the_retention_asked_for():
    rendered = backend().render(
        outpost_service.ServiceSpec(
            **dict(vars(spec()), log_max_bytes=2 * 1024 * 1024, log_backups=9)
        )
    )
    parser = UnhosedConfigParser()
    parser.read_string(rendered)
    section = "program:outpost-hello"
    assert parser.saneget(section, "stdout_logfile").endswith("/logs/service.log")
    assert parser.saneget(section, "stdout_logfile_maxbytes") == str(2 * 1024 * 1024)
    assert parser.saneget(section, "stdout_logfile_backups") == "9"
    assert parser.saneget(section, "redirect_stderr") == "true"


@pytest.mark.parametrize(
    ("env", "args", "error"),
    [
        ({"A": "x\ncommand=/bin/sh"}, [], "^env: A or its value holds a line break"),
        ({}, ["--x", "a\rb"], "^args: an argument holds a line break"),
    ],
)
def test_line_breaks_are_refused_by_the_backend_itself(env, args, error):
    """The module checks arguments first; a line break reaching the program file would corrupt
    it, and supervisord then refuses to reread any program."""
    bad = outpost_service.ServiceSpec(**dict(vars(spec(**env)), command=[*spec().command, *args]))

    with pytest.raises(outpost_service.ServiceError, match=error):
        backend().validate(bad)
