"""
A throwaway PostgreSQL server for tests: its own cluster in a folder, one database and one role,
reachable on a Unix socket in a short folder and on 127.0.0.1 at a free port.

The server comes from Debian's ``postgresql`` package, which ``make test`` installs when it is
missing. PostgreSQL refuses to run as root, so under root every server command runs as the
``postgres`` OS user through ``runuser``; any other user runs them as itself.

Import it as ``tests.support.postgres``, with the repository root on ``sys.path``.
"""

import contextlib
import glob
import logging
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn

log = logging.getLogger(__name__)

DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
TOOLS = ("initdb", "pg_ctl", "pg_isready", "postgres")
OS_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
# sockaddr_un holds 108 bytes, and the server adds "/.s.PGSQL.<port>.lock" to the folder.
SOCKET_DIR_MAX = 80
# Another process may take the free port between the probe and the server's bind.
PORT_ATTEMPTS = 3
SKIP_ENV = "OUTPOST_SKIP_POSTGRES"
NOT_INSTALLED = (
    "PostgreSQL is not installed: no folder with {tools} under {debian} or beside pg_ctl on PATH. "
    "Run `make test`, which installs Debian's postgresql package, or set {skip}=1 to skip the "
    "PostgreSQL tests."
)
# Durability costs time and buys nothing in a cluster that is deleted after the tests.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "password_encryption": "scram-sha-256",
}


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


class PostgresError(RuntimeError):
    """The test server could not be set up, started or stopped."""


def find_bin_dir():
    """The folder holding initdb, pg_ctl, pg_isready and postgres: Debian's newest, then PATH."""
    candidates = sorted(glob.glob(DEBIAN_BIN_DIRS), key=_version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    for folder in candidates:
        if all(os.access(os.path.join(folder, tool), os.X_OK) for tool in TOOLS):
            return pathlib.Path(folder)
    raise PostgresNotInstalled(
        NOT_INSTALLED.format(tools=", ".join(TOOLS), debian=DEBIAN_BIN_DIRS, skip=SKIP_ENV)
    )


def _version(bin_dir):
    """``/usr/lib/postgresql/15/bin`` sorts by ``(15,)``, ``.../9.6/bin`` by ``(9, 6)``."""
    name = pathlib.Path(bin_dir).parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Postgres:
    """
    One PostgreSQL cluster under ``root``: ``root/data`` holds it, ``root/postgres.log`` its log.

    ``start()`` creates the cluster, runs the server and creates ``database`` owned by ``user``;
    ``dsn`` then reaches that database over TCP with a password, as a master would. ``stop()``
    shuts the server down. The folder stays for the caller to remove.
    """

    def __init__(self, root, database="outpost", user="outpost", bin_dir=None):
        self.root = pathlib.Path(root).resolve()
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(24)
        self.bin_dir = pathlib.Path(bin_dir) if bin_dir else find_bin_dir()
        self.as_os_user = os.geteuid() == 0
        self.socket_dir = None
        self.port = None
        self.process = None
        self._own_socket_dir = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def dsn(self):
        """The libpq connection string of ``database`` for psycopg2; it holds the password."""
        return self.dsn_for(self.database)

    def dsn_for(self, database):
        return make_dsn(
            host=HOST, port=self.port, dbname=database, user=self.user, password=self.password
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout=60):
        """Create the cluster, run the server, create the role and database. Returns ``self``."""
        try:
            self._prepare_folders()
            self._initdb()
            self._launch(timeout)
            with self.admin() as connection, connection.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(self.user)),
                    (self.password,),
                )
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        log.info(
            "PostgreSQL from %s serves %s on %s:%s and %s",
            self.bin_dir,
            self.database,
            HOST,
            self.port,
            self.socket_dir,
        )
        return self

    def stop(self, timeout=30):
        """Shut down with ``pg_ctl stop -m fast``; ``-m immediate``, then a kill, if it lingers."""
        try:
            if self.process is not None:
                self._shut_down(timeout)
        finally:
            self.process = None
            if self._own_socket_dir:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
                self._own_socket_dir = False

    def _shut_down(self, timeout):
        if self.process.poll() is None:
            stopped = self._run(
                [self._tool("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
                + ["-t", str(timeout)]
            )
            if stopped.returncode != 0:
                log.warning("pg_ctl stop -m fast failed, stopping immediately: %s", stopped.stdout)
                self._run(
                    [self._tool("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"]
                )
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("PostgreSQL in %s outlived pg_ctl stop; killing it", self.data_dir)
            self._kill()
        log.info("PostgreSQL in %s stopped", self.data_dir)

    # -- databases ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def admin(self, database="postgres"):
        """An autocommit connection as the superuser, over the Unix socket."""
        connection = psycopg2.connect(
            host=str(self.socket_dir), port=self.port, dbname=database, user=SUPERUSER
        )
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()

    def create_database(self, name=None):
        """A new empty database owned by ``user``; a generated name unless given. Returns it."""
        name = name or f"test_{secrets.token_hex(6)}"
        with self.admin() as connection, connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.user)
                )
            )
        log.debug("created database %s", name)
        return name

    def drop_database(self, name):
        """Drop a database, closing whatever connections a test left open on it."""
        with self.admin() as connection, connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        log.debug("dropped database %s", name)

    @contextlib.contextmanager
    def fresh_database(self):
        """Yields the DSN of a new database and drops the database afterwards."""
        name = self.create_database()
        try:
            yield self.dsn_for(name)
        finally:
            self.drop_database(name)

    # -- plumbing -----------------------------------------------------------------------------

    def _tool(self, name):
        return str(self.bin_dir / name)

    def _as_server_user(self, argv):
        return ["runuser", "-u", OS_USER, "--", *argv] if self.as_os_user else argv

    def _run(self, argv):
        """Run a server command as the server's user; stdout and stderr come back together."""
        log.debug("running %s", argv[0])
        return subprocess.run(
            self._as_server_user(argv),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )

    def _prepare_folders(self):
        self.root.mkdir(parents=True, exist_ok=True)
        socket_dir = self.root / "run"
        if len(str(socket_dir)) > SOCKET_DIR_MAX:
            socket_dir = pathlib.Path(tempfile.mkdtemp(prefix="op-pgs-", dir="/tmp"))
            self._own_socket_dir = True
        socket_dir.mkdir(exist_ok=True)
        self.socket_dir = socket_dir
        if not self.as_os_user:
            return
        try:
            account = pwd.getpwnam(OS_USER)
        except KeyError as err:
            raise PostgresError(
                f"no {OS_USER!r} OS user to run PostgreSQL as; Debian's postgresql package "
                "creates it: run `make test`"
            ) from err
        for folder in (self.root, socket_dir):
            os.chown(folder, account.pw_uid, account.pw_gid)
        reachable = self._run(["test", "-w", str(self.root), "-a", "-w", str(socket_dir)])
        if reachable.returncode != 0:
            raise PostgresError(
                f"the {OS_USER} OS user cannot write {self.root} or {socket_dir}: a parent folder "
                "shuts it out (pytest's tmp_path does); give a folder under /tmp"
            )

    def _initdb(self):
        if (self.data_dir / "PG_VERSION").exists():
            raise PostgresError(f"{self.data_dir} already holds a cluster; give an empty folder")
        created = self._run(
            [
                self._tool("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        if created.returncode != 0:
            raise PostgresError(f"initdb failed in {self.data_dir}:\n{created.stdout}")
        log.info("initdb created a PostgreSQL cluster in %s", self.data_dir)

    def _launch(self, timeout):
        """Run the server on a free port; a port taken meanwhile costs another try."""
        for _attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            argv = [self._tool("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
            argv += ["-k", str(self.socket_dir)]
            for name, value in SERVER_SETTINGS.items():
                argv += ["-c", f"{name}={value}"]
            with open(self.log_path, "ab") as server_log:
                self.process = subprocess.Popen(
                    self._as_server_user(argv),
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=server_log,
                    stderr=subprocess.STDOUT,
                    # Ctrl-C reaches pytest alone, so the fixture still stops the server.
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                return
            self.process = None
            if "Address already in use" not in self._log_tail():
                break
            log.info("port %s was taken before PostgreSQL bound it; trying another", self.port)
        raise PostgresError(f"PostgreSQL did not start:\n{self._log_tail()}")

    def _wait_ready(self, timeout):
        """True once the server accepts connections, False if it exits first."""
        deadline = time.monotonic() + timeout
        probe = [self._tool("pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port)]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if subprocess.run(probe + ["-t", "1"], check=False).returncode == 0:
                return True
            time.sleep(0.05)
        self._kill()
        self.process = None
        raise PostgresError(f"PostgreSQL accepted no connection in {timeout}s:\n{self._log_tail()}")

    def _kill(self):
        """SIGKILL the session the server was started in: runuser and the server under it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _log_tail(self, lines=20):
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])
