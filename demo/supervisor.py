"""A real supervisord, the Linux service backend of outpost, for the demo, benchmarks and tests."""

import pathlib
import subprocess
import sys
import time

BIN = pathlib.Path(sys.executable).parent


class Supervisord:
    """One supervisord process with its own socket, include folder and logs under ``root``."""

    def __init__(self, root, credentials=None):
        self.root = pathlib.Path(root)
        # (username, password) that supervisord asks of every client on its socket.
        self.credentials = credentials
        self.conf_file = self.root / "supervisord.conf"
        self.include_dir = self.root / "conf.d"
        self.socket = self.root / "s.sock"
        self.ctl = str(BIN / "supervisorctl")
        self.process = None

    def write_config(self):
        self.include_dir.mkdir(parents=True, exist_ok=True)
        login = ""
        if self.credentials:
            login = "username={}\npassword={}\n".format(*self.credentials)
        self.conf_file.write_text(
            "[unix_http_server]\n"
            f"file={self.socket}\n"
            "chmod=0700\n"
            f"{login}"
            "[supervisord]\n"
            f"logfile={self.root / 'supervisord.log'}\n"
            f"pidfile={self.root / 'supervisord.pid'}\n"
            "nodaemon=true\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            "[supervisorctl]\n"
            f"serverurl=unix://{self.socket}\n"
            f"{login}"
            "[include]\n"
            f"files={self.include_dir}/*.conf\n"
        )

    def start(self, timeout=20):
        self.write_config()
        self.process = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.conf_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ctl_run("pid").returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"supervisord did not answer within {timeout}s")

    def ctl_run(self, *args):
        return subprocess.run(
            [self.ctl, "-c", str(self.conf_file), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def stop(self):
        if self.process and self.process.poll() is None:
            self.ctl_run("shutdown")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def minion_config(self):
        """The ``outpost:supervisor`` settings a minion needs to use this supervisord."""
        return {
            "conf_file": str(self.conf_file),
            "include_dir": str(self.include_dir),
        }
