"""
The release registry: which release each client should run, and how every rollout went.

SQLite on the master is the embedded default; PostgreSQL (psycopg2) serves several masters that
share one registry. Both speak the same SQL here; placeholders are written ``?`` and translated.

Master configuration::

    outpost:
      registry:
        driver: sqlite                 # or postgres
        path: /var/cache/salt/master/outpost/registry.sqlite
        # dsn: "host=db dbname=outpost user=outpost"   # postgres; password from ~/.pgpass
"""

import contextlib
import datetime
import json
import os
import sqlite3
import time

from salt.exceptions import CommandExecutionError

SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, source TEXT NOT NULL,
    manifest TEXT NOT NULL, registered_at TEXT NOT NULL, PRIMARY KEY (app, version));
CREATE TABLE IF NOT EXISTS desired (
    app TEXT NOT NULL, client TEXT NOT NULL, version TEXT NOT NULL, rollout_id INTEGER,
    updated_at TEXT NOT NULL, PRIMARY KEY (app, client));
CREATE TABLE IF NOT EXISTS history (
    id {serial}, time TEXT NOT NULL, app TEXT NOT NULL, client TEXT, version TEXT,
    previous TEXT, event TEXT NOT NULL, rollout_id INTEGER, reason TEXT);
CREATE TABLE IF NOT EXISTS rollouts (
    id {serial}, app TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
    phase TEXT NOT NULL, counts TEXT NOT NULL, reason TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS one_running_rollout_per_app
    ON rollouts (app) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS remediations (
    id {serial}, client TEXT NOT NULL, app TEXT NOT NULL, status TEXT NOT NULL,
    decision TEXT, reason TEXT, result TEXT, started_at TEXT NOT NULL, finished_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS one_remediation_per_client_app
    ON remediations (client, app) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS heartbeats (
    client TEXT PRIMARY KEY, last_seen {stamp} NOT NULL, apps TEXT NOT NULL,
    missing_since {stamp});
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, claimed_at {stamp} NOT NULL,
    expires_at {stamp} NOT NULL);
CREATE TABLE IF NOT EXISTS rollout_leases (
    rollout_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, lease_until {stamp} NOT NULL,
    plan TEXT, batches_done INTEGER NOT NULL DEFAULT 0);
"""
SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgres": "SERIAL PRIMARY KEY"}
# Unix times: PostgreSQL's REAL has 24 bits, which rounds today's time to whole minutes.
STAMP = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"}
# The PostgreSQL advisory lock every master's writing transaction takes first: "outpost" in ASCII.
WRITE_LOCK = int.from_bytes(b"outpost", "big")
FINISHED = ("succeeded", "halted", "superseded")


_SCHEMA_READY = set()


class RegistryError(CommandExecutionError):
    """The registry could not be read or written."""


class StaleRelease(RegistryError):
    """An announced version is not newer than the app's newest succeeded, running or queued one."""


def version_key(version):
    """Semantic version precedence: numbers compare as numbers, a pre-release sorts before its
    release, build metadata is ignored."""
    core, _, pre = str(version).split("+", 1)[0].partition("-")
    numbers = tuple(int(part) for part in core.split("."))
    if not pre:
        return numbers, (1,)
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
    )
    return numbers, (0, identifiers)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _older_than(started_iso, seconds):
    if seconds is None:
        return False
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return started_iso < moment.isoformat(timespec="milliseconds")


class Registry:
    """One connection per use; every method is one transaction."""

    def __init__(self, driver="sqlite", path=None, dsn=None):
        if driver not in SERIAL:
            raise RegistryError(f"registry:driver: {driver!r} is not sqlite or postgres")
        self.driver = driver
        self.path = path
        self.dsn = dsn
        # Pillar compiles open the registry for every client: create the schema once a process.
        if (driver, path, dsn) not in _SCHEMA_READY:
            self._create_schema()
            _SCHEMA_READY.add((driver, path, dsn))

    @classmethod
    def from_opts(cls, opts):
        config = (opts.get("outpost") or {}).get("registry") or {}
        default_path = os.path.join(opts.get("cachedir", "."), "outpost", "registry.sqlite")
        return cls(
            driver=config.get("driver", "sqlite"),
            path=config.get("path", default_path),
            dsn=config.get("dsn"),
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _connect(self):
        if self.driver == "sqlite":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as err:
                # Another connection is switching a new file to WAL this very moment, and the
                # switch does not wait out the busy timeout. The file keeps the mode once set.
                if "locked" not in str(err):
                    connection.close()
                    raise
            return connection
        import psycopg2  # pylint: disable=import-outside-toplevel

        return psycopg2.connect(self.dsn)

    def _driver_error(self):
        if self.driver == "sqlite":
            return sqlite3.Error
        import psycopg2  # pylint: disable=import-outside-toplevel

        return psycopg2.Error

    @contextlib.contextmanager
    def _transaction(self, write=True):
        """
        Writing transactions take turns, so each reads what the one before it wrote: SQLite's
        ``BEGIN IMMEDIATE`` locks the file, PostgreSQL's READ COMMITTED needs the advisory lock.
        """
        try:
            connection = self._connect()
        except Exception as err:  # the drivers' own error classes differ
            raise RegistryError(f"registry: cannot open the {self.driver} registry: {err}") from err
        driver_error = self._driver_error()
        try:
            cursor = _Cursor(connection.cursor(), self.driver)
            if self.driver == "sqlite":
                # A reader needs no lock: WAL lets it read while a writer writes.
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            elif write:
                cursor.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            yield cursor
            connection.commit()
        except driver_error as err:
            with contextlib.suppress(driver_error):
                connection.rollback()
            raise RegistryError(f"registry: the {self.driver} registry failed: {err}") from err
        except Exception:
            with contextlib.suppress(driver_error):
                connection.rollback()
            raise
        finally:
            connection.close()

    def _create_schema(self):
        with self._transaction() as cursor:
            for statement in SCHEMA.format(
                serial=SERIAL[self.driver], stamp=STAMP[self.driver]
            ).split(";"):
                if statement.strip():
                    cursor.execute(statement)

    # -- releases -----------------------------------------------------------------------------

    def register_release(self, app, version, sha256, source, manifest):
        """Record a release once; the same version with other content is refused."""
        with self._transaction() as cursor:
            known = cursor.one(
                "SELECT sha256 FROM releases WHERE app = ? AND version = ?", (app, version)
            )
            if known and known[0] != sha256:
                raise RegistryError(
                    f"manifest.sha256: {app} {version} is registered with other content"
                )
            if not known:
                cursor.execute(
                    "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?)",
                    (app, version, sha256, source, json.dumps(manifest, sort_keys=True), now_iso()),
                )
                self._log(cursor, app, None, version, None, "registered")
        return not known

    def release(self, app, version):
        with self._transaction(write=False) as cursor:
            row = cursor.one(
                "SELECT app, version, sha256, source, manifest, registered_at FROM releases "
                "WHERE app = ? AND version = ?",
                (app, version),
            )
        if not row:
            return None
        return dict(
            zip(
                ("app", "version", "sha256", "source", "manifest", "registered_at"),
                row,
                strict=True,
            )
        )

    # -- desired releases ---------------------------------------------------------------------

    def desired_for_client(self, client):
        """``{app: {version, source, source_hash}}`` of every app this client should run."""
        with self._transaction(write=False) as cursor:
            rows = cursor.all(
                "SELECT d.app, d.version, r.source, r.sha256 FROM desired d JOIN releases r "
                "ON r.app = d.app AND r.version = d.version WHERE d.client = ?",
                (client,),
            )
        return {
            app: {"version": version, "source": source, "source_hash": f"sha256={sha256}"}
            for app, version, source, sha256 in rows
        }

    def desired(self, app):
        """``{client: version}`` for one app."""
        with self._transaction(write=False) as cursor:
            rows = cursor.all("SELECT client, version FROM desired WHERE app = ?", (app,))
        return dict(rows)

    def set_desired(
        self, app, clients, version, rollout_id, event, reason=None, only_changed=False
    ):
        """Point clients at a release; history keeps what each pointed at before. With
        ``only_changed``, a client this rollout already points at this release is left alone.
        Returns the clients changed."""
        changed = []
        with self._transaction() as cursor:
            for client in clients:
                row = cursor.one(
                    "SELECT version, rollout_id FROM desired WHERE app = ? AND client = ?",
                    (app, client),
                )
                if only_changed and row and (row[0], row[1]) == (version, rollout_id):
                    continue
                changed.append(client)
                previous = row[0] if row else None
                if row:
                    cursor.execute(
                        "UPDATE desired SET version = ?, rollout_id = ?, updated_at = ? "
                        "WHERE app = ? AND client = ?",
                        (version, rollout_id, now_iso(), app, client),
                    )
                else:
                    cursor.execute(
                        "INSERT INTO desired VALUES (?, ?, ?, ?, ?)",
                        (app, client, version, rollout_id, now_iso()),
                    )
                self._log(cursor, app, client, version, previous, event, rollout_id, reason)
        return changed

    def moved_in_rollout(self, rollout_id):
        """``{client: version before}`` for every client a rollout moved, first move wins."""
        with self._transaction(write=False) as cursor:
            rows = cursor.all(
                "SELECT client, previous FROM history WHERE rollout_id = ? AND event = 'promote' "
                "ORDER BY id",
                (rollout_id,),
            )
        moved = {}
        for client, previous in rows:
            moved.setdefault(client, previous)
        return moved

    def forget_desired(self, app, clients, rollout_id, reason):
        """Clients that had no release before a halted rollout go back to having none."""
        with self._transaction() as cursor:
            for client in clients:
                row = cursor.one(
                    "SELECT version FROM desired WHERE app = ? AND client = ?", (app, client)
                )
                cursor.execute("DELETE FROM desired WHERE app = ? AND client = ?", (app, client))
                previous = row[0] if row else None
                self._log(cursor, app, client, None, previous, "rollback", rollout_id, reason)

    # -- rollouts -----------------------------------------------------------------------------

    def claim_rollout(self, app, version, owner=None, lease=None):
        """Start a rollout, or queue it when one of the same app runs. Returns (id, status).

        A newer release supersedes an older queued one, also when nothing runs at the moment (the
        last rollout ended and ``promote_queued`` is yet to come): only the newest waits or runs.
        The same release announced again while it runs or waits is that rollout (``duplicate``),
        so two masters that both hear of it start it once. A version at or below the app's newest
        succeeded, running or queued one raises ``StaleRelease``: a replayed or re-sent older
        announcement must not downgrade the clients. A running rollout gets ``owner``'s lease for
        ``lease`` seconds (see ``take_over``).
        """
        with self._transaction() as cursor:
            same = cursor.one(
                "SELECT id FROM rollouts WHERE app = ? AND version = ? "
                "AND status IN ('running', 'queued')",
                (app, version),
            )
            if same:
                return same[0], "duplicate"
            self._refuse_stale(cursor, app, version)
            running = cursor.one(
                "SELECT id FROM rollouts WHERE app = ? AND status = 'running'", (app,)
            )
            cursor.execute(
                "UPDATE rollouts SET status = 'superseded', updated_at = ?, reason = ? "
                "WHERE app = ? AND status = 'queued'",
                (now_iso(), f"a newer release ({version}) arrived", app),
            )
            status = "queued" if running else "running"
            rollout_id = cursor.insert_returning_id(
                "INSERT INTO rollouts (app, version, status, phase, counts, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (app, version, status, status, "{}", now_iso(), now_iso()),
            )
            if status == "running" and owner:
                self._lease(cursor, rollout_id, owner, lease)
        return rollout_id, status

    @staticmethod
    def _refuse_stale(cursor, app, version):
        rows = cursor.all(
            "SELECT version, status FROM rollouts WHERE app = ? "
            "AND status IN ('succeeded', 'running', 'queued')",
            (app,),
        )
        if not rows:
            return
        newest, status = max(rows, key=lambda row: version_key(row[0]))
        if version_key(version) <= version_key(newest):
            raise StaleRelease(
                f"version: {version} of {app} is not newer than {newest} ({status}); "
                "an older or equal release is never rolled out again"
            )

    def promote_queued(self, app, owner=None, lease=None):
        """After a rollout ends, the newest queued one of the same app runs next."""
        with self._transaction() as cursor:
            if cursor.one("SELECT id FROM rollouts WHERE app = ? AND status = 'running'", (app,)):
                return None
            row = cursor.one(
                "SELECT id, version FROM rollouts WHERE app = ? AND status = 'queued' "
                "ORDER BY id DESC",
                (app,),
            )
            if not row:
                return None
            cursor.execute(
                "UPDATE rollouts SET status = 'running', phase = 'running', updated_at = ? "
                "WHERE id = ?",
                (now_iso(), row[0]),
            )
            if owner:
                self._lease(cursor, row[0], owner, lease)
        return {"id": row[0], "version": row[1]}

    # -- leases: which master runs a rollout --------------------------------------------------

    @staticmethod
    def _lease(cursor, rollout_id, owner, lease):
        until = time.time() + float(lease or 120)
        if cursor.one("SELECT owner FROM rollout_leases WHERE rollout_id = ?", (rollout_id,)):
            cursor.execute(
                "UPDATE rollout_leases SET owner = ?, lease_until = ? WHERE rollout_id = ?",
                (owner, until, rollout_id),
            )
        else:
            cursor.execute(
                "INSERT INTO rollout_leases (rollout_id, owner, lease_until, batches_done)"
                " VALUES (?, ?, ?, 0)",
                (rollout_id, owner, until),
            )

    def lease(self, rollout_id):
        """``{owner, lease_until, plan, batches_done}`` of a rollout, or None."""
        with self._transaction(write=False) as cursor:
            row = cursor.one(
                "SELECT owner, lease_until, plan, batches_done FROM rollout_leases "
                "WHERE rollout_id = ?",
                (rollout_id,),
            )
        if not row:
            return None
        plan = json.loads(row[2]) if row[2] else None
        return {"owner": row[0], "lease_until": row[1], "plan": plan, "batches_done": row[3]}

    def renew_leases(self, owner, lease):
        """Extend the leases of every running rollout ``owner`` runs; returns their ids."""
        with self._transaction() as cursor:
            rows = cursor.all(
                "SELECT l.rollout_id FROM rollout_leases l JOIN rollouts r ON r.id = l.rollout_id "
                "WHERE l.owner = ? AND r.status = 'running'",
                (owner,),
            )
            ids = [row[0] for row in rows]
            for rollout_id in ids:
                cursor.execute(
                    "UPDATE rollout_leases SET lease_until = ? WHERE rollout_id = ?",
                    (time.time() + float(lease), rollout_id),
                )
        return ids

    def take_over(self, owner, lease, now=None):
        """Running rollouts whose owner's lease ran out become ``owner``'s, in one transaction
        (so of several masters exactly one takes each). Returns ``[{id, app, version, from}]``.
        A master never takes over its own rollout: it may be running still, only late to renew."""
        now = time.time() if now is None else now
        taken = []
        with self._transaction() as cursor:
            rows = cursor.all(
                "SELECT r.id, r.app, r.version, l.owner FROM rollouts r "
                "LEFT JOIN rollout_leases l ON l.rollout_id = r.id "
                "WHERE r.status = 'running' AND (l.lease_until IS NULL OR l.lease_until < ?) "
                "AND (l.owner IS NULL OR l.owner <> ?)",
                (now, owner),
            )
            for rollout_id, app, version, previous in rows:
                self._lease(cursor, rollout_id, owner, lease)
                reason = f"{owner} took over from {previous or 'no master'}: its lease ran out"
                self._log(cursor, app, None, version, None, "takeover", rollout_id, reason)
                taken.append({"id": rollout_id, "app": app, "version": version, "from": previous})
        return taken

    def owns(self, rollout_id, owner):
        """True when ``owner`` holds the rollout's lease (or nobody does: one master alone)."""
        found = self.lease(rollout_id)
        return found is None or found["owner"] == owner

    def save_plan(self, rollout_id, plan):
        """The batches are fixed once: a master that takes over carries on with the same ones."""
        with self._transaction() as cursor:
            row = cursor.one("SELECT plan FROM rollout_leases WHERE rollout_id = ?", (rollout_id,))
            if row and row[0]:
                return json.loads(row[0])
            if row:
                cursor.execute(
                    "UPDATE rollout_leases SET plan = ? WHERE rollout_id = ?",
                    (json.dumps(plan, sort_keys=True), rollout_id),
                )
        return plan

    def batch_passed(self, rollout_id, batch):
        with self._transaction() as cursor:
            cursor.execute(
                "UPDATE rollout_leases SET batches_done = ? WHERE rollout_id = ? "
                "AND batches_done < ?",
                (int(batch) + 1, rollout_id, int(batch) + 1),
            )

    # -- claims: an event acted on once, whichever master hears it ----------------------------

    def claim(self, key, owner, ttl):
        """True for the first master to claim ``key`` within ``ttl`` seconds, False for every
        other. The key is the table's primary key and the claim one locked transaction."""
        now = time.time()
        with self._transaction() as cursor:
            row = cursor.one("SELECT owner, expires_at FROM claims WHERE key = ?", (key,))
            if row and row[1] >= now:
                return False
            if row:
                cursor.execute(
                    "UPDATE claims SET owner = ?, claimed_at = ?, expires_at = ? WHERE key = ?",
                    (owner, now, now + float(ttl), key),
                )
            else:
                cursor.execute(
                    "INSERT INTO claims VALUES (?, ?, ?, ?)", (key, owner, now, now + float(ttl))
                )
            # Old claims are of no use to anyone: keep the table small.
            cursor.execute("DELETE FROM claims WHERE expires_at < ?", (now - 3600,))
        return True

    def consume_claim(self, key, owner):
        """True once, for ``owner``'s unexpired claim, which it removes."""
        with self._transaction() as cursor:
            row = cursor.one("SELECT owner, expires_at FROM claims WHERE key = ?", (key,))
            if not row or row[0] != owner or row[1] < time.time():
                return False
            cursor.execute("DELETE FROM claims WHERE key = ?", (key,))
        return True

    def apps_with_orphaned_queue(self):
        """Apps with a queued rollout and none running: the master that would start it is gone."""
        with self._transaction(write=False) as cursor:
            rows = cursor.all(
                "SELECT DISTINCT app FROM rollouts q WHERE q.status = 'queued' AND NOT EXISTS "
                "(SELECT 1 FROM rollouts r WHERE r.app = q.app AND r.status = 'running')"
            )
        return sorted(row[0] for row in rows)

    def claim_owner(self, key):
        with self._transaction(write=False) as cursor:
            row = cursor.one("SELECT owner FROM claims WHERE key = ?", (key,))
        return row[0] if row else None

    def update_rollout(self, rollout_id, phase, counts=None, status=None, reason=None):
        with self._transaction() as cursor:
            cursor.execute(
                "UPDATE rollouts SET phase = ?, counts = COALESCE(?, counts), "
                "status = COALESCE(?, status), reason = COALESCE(?, reason), updated_at = ? "
                "WHERE id = ?",
                (
                    phase,
                    json.dumps(counts) if counts is not None else None,
                    status,
                    reason,
                    now_iso(),
                    rollout_id,
                ),
            )

    def rollout(self, rollout_id):
        rows = self._rollouts("WHERE id = ?", (rollout_id,))
        if not rows:
            raise RegistryError(f"rollout_id: no rollout {rollout_id}")
        return rows[0]

    def rollouts(self, app=None, limit=20):
        if app:
            return self._rollouts("WHERE app = ? ORDER BY id DESC LIMIT ?", (app, limit))
        return self._rollouts("ORDER BY id DESC LIMIT ?", (limit,))

    def _rollouts(self, where, params):
        columns = (
            "id",
            "app",
            "version",
            "status",
            "phase",
            "counts",
            "reason",
            "created_at",
            "updated_at",
        )
        with self._transaction(write=False) as cursor:
            # Column names and clauses are this module's own constants; values are parameters.
            rows = cursor.all(f"SELECT {', '.join(columns)} FROM rollouts {where}", params)  # noqa: S608
        found = [dict(zip(columns, row, strict=True)) for row in rows]
        for rollout in found:
            rollout["counts"] = json.loads(rollout["counts"])
        return found

    # -- remediations -------------------------------------------------------------------------

    def claim_remediation(self, client, app, abandon_after=None):
        """The one remediation of a client's app, or None when another is under way. A claim
        older than ``abandon_after`` seconds was left by a master that stopped mid-remediation:
        it is closed as ``abandoned`` and the new claim taken, so self-healing does not stop."""
        with self._transaction() as cursor:
            running = cursor.one(
                "SELECT id, started_at FROM remediations "
                "WHERE client = ? AND app = ? AND status = 'running'",
                (client, app),
            )
            if running and not _older_than(running[1], abandon_after):
                return None
            if running:
                cursor.execute(
                    "UPDATE remediations SET status = 'done', decision = 'abandoned', reason = ?, "
                    "result = 'no end recorded', finished_at = ? WHERE id = ?",
                    (f"no end within {float(abandon_after):g} s", now_iso(), running[0]),
                )
            return cursor.insert_returning_id(
                "INSERT INTO remediations (client, app, status, started_at) VALUES (?, ?, ?, ?)",
                (client, app, "running", now_iso()),
            )

    def finish_remediation(self, remediation_id, decision, reason, result):
        with self._transaction() as cursor:
            cursor.execute(
                "UPDATE remediations SET status = 'done', decision = ?, reason = ?, result = ?, "
                "finished_at = ? WHERE id = ?",
                (decision, reason, result, now_iso(), remediation_id),
            )

    def remediations(self, client, since_iso, app=None):
        """Finished remediations of a client since a time, oldest first."""
        columns = ("id", "client", "app", "decision", "reason", "result", "started_at")
        sql = (
            "SELECT id, client, app, decision, reason, result, started_at FROM remediations "
            "WHERE client = ? AND status = 'done' AND started_at >= ?"
        )
        params = [client, since_iso]
        if app:
            sql += " AND app = ?"
            params.append(app)
        with self._transaction() as cursor:
            rows = cursor.all(sql + " ORDER BY id", tuple(params))
        return [dict(zip(columns, row, strict=True)) for row in rows]

    # -- heartbeats ---------------------------------------------------------------------------

    def record_heartbeat(self, client, apps, seen_at):
        """Returns True when the client had been reported missing."""
        with self._transaction() as cursor:
            row = cursor.one("SELECT missing_since FROM heartbeats WHERE client = ?", (client,))
            if row:
                cursor.execute(
                    "UPDATE heartbeats SET last_seen = ?, apps = ?, missing_since = NULL "
                    "WHERE client = ?",
                    (seen_at, json.dumps(apps, sort_keys=True), client),
                )
            else:
                cursor.execute(
                    "INSERT INTO heartbeats VALUES (?, ?, ?, NULL)",
                    (client, seen_at, json.dumps(apps, sort_keys=True)),
                )
        return bool(row and row[0])

    def newly_missing(self, older_than, now):
        """Clients silent since before ``older_than``, not reported yet; marks them reported."""
        with self._transaction() as cursor:
            rows = cursor.all(
                "SELECT client, last_seen FROM heartbeats "
                "WHERE last_seen < ? AND missing_since IS NULL",
                (older_than,),
            )
            for client, _ in rows:
                cursor.execute(
                    "UPDATE heartbeats SET missing_since = ? WHERE client = ?", (now, client)
                )
        return dict(rows)

    # -- history ------------------------------------------------------------------------------

    def history(self, app=None, client=None, rollout_id=None):
        clauses, params = [], []
        for column, value in (("app", app), ("client", client), ("rollout_id", rollout_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = (
            "id",
            "time",
            "app",
            "client",
            "version",
            "previous",
            "event",
            "rollout_id",
            "reason",
        )
        with self._transaction(write=False) as cursor:
            # Column names and clauses are this module's own constants; values are parameters.
            rows = cursor.all(
                f"SELECT {', '.join(columns)} FROM history {where} ORDER BY id",  # noqa: S608
                tuple(params),
            )
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def log(self, app, event, client=None, version=None, rollout_id=None, reason=None):
        with self._transaction() as cursor:
            self._log(cursor, app, client, version, None, event, rollout_id, reason)

    @staticmethod
    def _log(cursor, app, client, version, previous, event, rollout_id=None, reason=None):
        cursor.execute(
            "INSERT INTO history (time, app, client, version, previous, event, rollout_id, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now_iso(), app, client, version, previous, event, rollout_id, reason),
        )


class _Cursor:
    """SQL written once with ``?`` placeholders, run on either driver."""

    def __init__(self, cursor, driver):
        self.cursor = cursor
        self.driver = driver

    def _sql(self, sql):
        return sql.replace("?", "%s") if self.driver == "postgres" else sql

    def execute(self, sql, params=()):
        self.cursor.execute(self._sql(sql), params)

    def one(self, sql, params=()):
        self.execute(sql, params)
        return self.cursor.fetchone()

    def all(self, sql, params=()):
        self.execute(sql, params)
        return self.cursor.fetchall()

    def insert_returning_id(self, sql, params):
        self.execute(sql + " RETURNING id", params)
        return self.cursor.fetchone()[0]
