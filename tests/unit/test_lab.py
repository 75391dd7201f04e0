"""The lab the demo and the benchmarks start: its daemons' environment."""

from unittest import mock

from demo import lab


def test_daemons_keep_bytecode_even_when_the_shell_says_not_to(monkeypatch, tmp_path):
    """With the shell's PYTHONDONTWRITEBYTECODE the lab's minions compiled every synced module from
    source in every job, which no service manager's environment asks for."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("OUTPOST_LAB_PROBE", "kept")
    popen = mock.create_autospec(lab.subprocess.Popen)
    monkeypatch.setattr(lab.subprocess, "Popen", popen)

    lab.Lab(base=tmp_path)._spawn("salt-minion", tmp_path / "etc" / "client-1")

    environment = popen.call_args.kwargs["env"]
    assert "PYTHONDONTWRITEBYTECODE" not in environment
    assert environment["OUTPOST_LAB_PROBE"] == "kept"
