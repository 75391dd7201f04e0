"""shiv_app's read-only functions: a bad argument is refused naming it, never a raw error."""

import importlib.util
import re
from unittest import mock

import pytest
from salt.exceptions import SaltInvocationError

import outpost_health
from tests.conftest import REPO


@pytest.fixture(scope="module")
def shiv_app():
    spec = importlib.util.spec_from_file_location(
        "shiv_app_inputs", REPO / "_modules" / "shiv_app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/", "http://", "http://[::1", 7]
)
def test_a_health_url_that_is_not_http_is_refused_naming_url(url):
    """check_health url=file:///... ended in a TypeError from urllib."""
    with pytest.raises(SaltInvocationError, match=r"^url: "):
        outpost_health.validate_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/health", "https://hello.example.com/"])
def test_http_health_urls_pass(url):
    assert outpost_health.validate_url(url) == url


def test_check_health_refuses_a_file_url_before_probing(shiv_app):
    releases = mock.Mock(spec=["settings", "current"])
    releases.settings.return_value = {"port": 8080}
    probe = mock.create_autospec(outpost_health.probe)
    with (
        mock.patch.object(shiv_app, "_releases", return_value=releases),
        mock.patch.object(shiv_app.outpost_health, "probe", probe),
        pytest.raises(SaltInvocationError, match=r"^url: 'file:///etc/passwd'"),
    ):
        shiv_app.check_health("hello", url="file:///etc/passwd")
    probe.assert_not_called()


@pytest.mark.parametrize("limit", ["x", 0, -1, "1.5", True, "²"])
def test_read_journal_refuses_a_limit_that_is_no_positive_number(shiv_app, limit):
    """read_journal limit=x raised a bare ValueError from int()."""
    with (
        mock.patch.object(shiv_app, "_releases") as releases,
        pytest.raises(SaltInvocationError, match=r"^limit: "),
    ):
        shiv_app.read_journal("hello", limit=limit)
    releases.assert_not_called()


def test_read_journal_takes_a_limit_given_as_text(shiv_app):
    releases = mock.Mock(spec=["journal"])
    releases.journal.return_value = [{"event": "installed"}]
    with mock.patch.object(shiv_app, "_releases", return_value=releases):
        assert shiv_app.read_journal("hello", limit="5") == [{"event": "installed"}]
    releases.journal.assert_called_once_with(limit=5)


@pytest.mark.parametrize("value", [3.7, True, "3.0", "", None, 0, 101, "\u0663"])
def test_retries_is_a_whole_number_named_as_given(shiv_app, value):
    """retries=3.7 was refused as 'retries: None'; keep=2.9 quietly meant 2 and keep=True 1."""
    with pytest.raises(SaltInvocationError, match=rf"^retries: {re.escape(repr(value))} is not"):
        shiv_app._validate_retries(value)


@pytest.mark.parametrize("value", [2.9, True, "2.9", 0])
def test_keep_is_never_rounded(shiv_app, value):
    with pytest.raises(SaltInvocationError, match=r"^keep: "):
        shiv_app._validate_keep(value)


@pytest.mark.parametrize(("value", "number"), [(3, 3), (3.0, 3), ("3", 3), (" 7 ", 7)])
def test_whole_numbers_pass_as_int_whole_float_or_digits(shiv_app, value, number):
    assert shiv_app._validate_keep(value) == number


@pytest.mark.parametrize(
    "value", [True, False, float("nan"), float("inf"), 0, 3601, "x", "1_0", "\u0663", "1e3"]
)
def test_seconds_refuse_bools_and_what_is_no_duration(shiv_app, value):
    with pytest.raises(SaltInvocationError, match=r"^settle: .* must be seconds, more than 0"):
        shiv_app._validate_seconds(value, "settle")
