"""``make demo`` keeps no private key behind: its work folder goes when the demo ends."""

import runpy

import pytest

from tests.conftest import REPO

DEMO = runpy.run_path(str(REPO / "demo" / "__main__.py"), run_name="demo_cleanup")


def run_main(monkeypatch, story, seen=None):
    seen = [] if seen is None else seen

    def fake_run_demo(work):
        (work / "signing.pem").write_text("PRIVATE KEY", encoding="ascii")
        seen.append(work)
        return story()

    monkeypatch.setitem(DEMO["main"].__globals__, "run_demo", fake_run_demo)
    return DEMO["main"](), seen


def test_the_work_folder_and_its_key_are_gone_after_the_demo(monkeypatch):
    status, [work] = run_main(monkeypatch, lambda: 0)

    assert status == 0
    assert not work.exists()


def test_the_work_folder_and_its_key_are_gone_after_a_failed_demo(monkeypatch):
    """The demo left /tmp/outpost-demo-*/signing.pem, a private key, behind."""
    seen = []

    def story():
        raise RuntimeError("a daemon did not start")

    with pytest.raises(RuntimeError):
        run_main(monkeypatch, story, seen)

    assert not seen[0].exists()
