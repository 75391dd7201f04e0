"""The lab the demo and the benchmarks start: its daemons' environment."""

from demo.lab import daemon_environment


def test_daemons_keep_bytecode_even_when_the_shell_says_not_to(monkeypatch):
    """With the shell's PYTHONDONTWRITEBYTECODE the lab's minions compiled every synced module from
    source in every job, which no service manager's environment asks for."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("OUTPOST_LAB_PROBE", "kept")

    environment = daemon_environment()

    assert "PYTHONDONTWRITEBYTECODE" not in environment
    assert environment["OUTPOST_LAB_PROBE"] == "kept"
