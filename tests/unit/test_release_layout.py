"""The release folder library on its own: validation, path limits, pointers, pruning."""

import errno
import os
import shutil
import sys

import pytest
from salt.exceptions import SaltInvocationError

import outpost_release
from tests.support.apps import build_hello


@pytest.fixture(scope="module")
def hello_pyz(tmp_path_factory):
    return build_hello(tmp_path_factory.mktemp("layout"), "1.0.0")


def stage(releases, manifest, version):
    staged = releases.stage_path(version)
    shutil.copy(manifest["path"], staged)
    return staged


def test_install_refuses_a_root_whose_extraction_would_pass_max_path(tmp_path, hello_pyz):
    deep_root = tmp_path / ("r" * 150)
    releases = outpost_release.AppReleases(str(deep_root), "hello")
    staged = stage(releases, hello_pyz, "1.0.0")

    with pytest.raises(outpost_release.ReleaseError, match=r"^root: .* over the limit of 259"):
        releases.install("1.0.0", staged, hello_pyz["sha256"], max_path=259)

    assert not os.path.exists(staged)
    assert releases.releases() == []


def test_install_within_max_path_lays_out_the_release(tmp_path, hello_pyz):
    releases = outpost_release.AppReleases(str(tmp_path), "hello")
    staged = stage(releases, hello_pyz, "1.0.0")

    info = releases.install("1.0.0", staged, hello_pyz["sha256"], max_path=259)

    assert info["sha256"] == hello_pyz["sha256"]
    assert os.path.isfile(releases.pyz_path("1.0.0"))
    assert os.path.isdir(releases.shiv_root("1.0.0"))
    assert releases.journal()[-1]["action"] == "install"


def test_switch_keeps_the_old_current_as_previous(tmp_path):
    releases = outpost_release.AppReleases(str(tmp_path), "hello")
    releases.ensure_folders()

    releases.switch("1.0.0")
    releases.switch("1.1.0")
    releases.switch("1.1.0")

    assert (releases.current(), releases.previous()) == ("1.1.0", "1.0.0")
    releases.restore_pointers("1.0.0", None)
    assert (releases.current(), releases.previous()) == ("1.0.0", None)


def test_prunable_never_names_current_or_previous():
    releases = outpost_release.AppReleases("/nowhere", "hello")
    installed = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]

    assert releases.prunable(1, installed, {"1.3.0", "1.2.0"}) == ["1.0.0", "1.1.0"]
    assert releases.prunable(1, installed, {"1.0.0", "1.3.0"}) == ["1.1.0", "1.2.0"]
    assert releases.prunable(5, installed, set()) == []


@pytest.mark.parametrize(
    ("check", "value", "field"),
    [
        (outpost_release.validate_app_name, "Hello", "name"),
        (outpost_release.validate_app_name, "../etc", "name"),
        (outpost_release.validate_app_name, "con", "name"),
        (outpost_release.validate_app_name, "nul", "name"),
        (outpost_release.validate_app_name, "com1", "name"),
        (outpost_release.validate_app_name, "lpt9", "name"),
        (outpost_release.validate_version, "1.0.0-.", "version"),
        (outpost_release.validate_version, "1.0.0-rc.", "version"),
        (outpost_release.validate_version, "1.0.0-rc..1", "version"),
        (outpost_release.validate_version, "1.0.0+build.", "version"),
        (outpost_release.validate_version, "1.0", "version"),
        (outpost_release.validate_version, "1.0.0\n", "version"),
        (outpost_release.validate_version, "{{ 7*7 }}", "version"),
        (outpost_release.validate_version, "01.0.0", "version"),
        (outpost_release.validate_version, "1.00.0", "version"),
        (outpost_release.validate_version, "1.0.0-01", "version"),
        (outpost_release.validate_version, "heartbeat", "version"),
        (outpost_release.validate_app_name, "heartbeat", "name"),
        (outpost_release.normalize_sha256, "abc", "source_hash"),
        (outpost_release.normalize_sha256, "md5=" + "0" * 32, "source_hash"),
    ],
)
def test_bad_values_name_their_field(check, value, field):
    """Windows device names (con, com1) and versions ending in '.' were accepted."""
    with pytest.raises(SaltInvocationError, match=rf"^{field}: "):
        check(value)


@pytest.mark.parametrize(
    "version",
    ["1.0.0", "1.2.3-rc.1", "1.2.3-rc.1+build.7", "1.0.0-a-b", "1.0.0-0a", "1.0.0-rc.10", "0.0.0"],
)
def test_semantic_versions_pass(version):
    assert outpost_release.validate_version(version) == version


@pytest.mark.parametrize("name", ["console", "com10", "hello", "lpt"])
def test_names_that_only_resemble_device_names_pass(name):
    assert outpost_release.validate_app_name(name) == name


def test_sha256_accepts_salt_style_prefix():
    digest = "A" * 64
    assert outpost_release.normalize_sha256(f"sha256={digest}") == "a" * 64


def test_a_torn_journal_line_is_skipped_and_the_next_entry_starts_a_line(tmp_path):
    """A crash mid-write left half a line; every get_status, and so every beacon check,
    then raised JSONDecodeError, and the app looked unhealthy with no release."""
    releases = outpost_release.AppReleases(str(tmp_path), "hello")
    releases.ensure_folders()
    releases.switch("1.0.0")
    releases.record("activate", "1.0.0")
    with open(releases.journal_path, "a", encoding="utf-8") as stream:
        stream.write('{"time": "t2", "act')

    releases.record("prune", "0.9.0")

    assert [entry["action"] for entry in releases.journal()] == ["activate", "prune"]
    assert releases.live_since() == releases.journal()[0]["time"]


def test_live_since_reaches_past_the_journal_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(outpost_release, "JOURNAL_TAIL_BYTES", 300)
    releases = outpost_release.AppReleases(str(tmp_path), "hello")
    releases.ensure_folders()
    releases.switch("1.0.0")
    went_live = releases.record("activate", "1.0.0")["time"]
    for number in range(20):
        releases.record("install-failed", f"1.1.{number}", reason="x" * 40)

    assert releases.live_since() == went_live


class FakeMsvcrt:
    """msvcrt.locking as Windows words it: LK_LOCK gives up after ten seconds with EDEADLOCK."""

    LK_LOCK, LK_NBLCK, LK_UNLCK = 1, 2, 0

    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def locking(self, fileno, mode, nbytes):
        self.calls += 1
        if self.failures:
            raise OSError(self.failures.pop(0), "locking")


class FakeHandle:
    def seek(self, position):
        assert position == 0

    def fileno(self):
        return 7


def test_windows_lock_waits_out_a_busy_byte_but_not_a_broken_handle(monkeypatch):
    busy = FakeMsvcrt([errno.EDEADLK, errno.EDEADLK])
    monkeypatch.setitem(sys.modules, "msvcrt", busy)
    monkeypatch.setattr(os, "name", "nt")
    outpost_release._lock_file(FakeHandle())
    assert busy.calls == 3

    broken = FakeMsvcrt([errno.EBADF])
    monkeypatch.setitem(sys.modules, "msvcrt", broken)
    with pytest.raises(OSError, match="locking"):
        outpost_release._lock_file(FakeHandle())
    assert broken.calls == 1
