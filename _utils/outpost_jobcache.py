"""
The PostgreSQL tables of Salt's ``pgjsonb`` master job cache, created by outpost.

Salt's returner (``salt/returners/pgjsonb.py``) writes ``jids`` (one row per job: its load),
``salt_returns`` (one row per minion return) and ``salt_events``, and expects them to exist.
With ``archive_jobs: true`` it creates ``*_archive`` copies itself (``LIKE`` the originals) and
moves rows older than ``keep_jobs_seconds`` there; otherwise it deletes them.

Master configuration::

    master_job_cache: pgjsonb
    keep_jobs_seconds: 7776000        # 90 days, in seconds; Salt's default is 86400 (24 hours)
    archive_jobs: true                # older jobs move to *_archive tables instead of going
    returner.pgjsonb.host: db.example.com
    returner.pgjsonb.port: 5432
    returner.pgjsonb.db: salt
    returner.pgjsonb.user: salt
    returner.pgjsonb.pass: <secret>
    returner.pgjsonb.connect_timeout: 5
"""

import logging

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

# IF NOT EXISTS throughout: creating the schema again is harmless and keeps every row.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jids (jid varchar(255) PRIMARY KEY, load jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idx_jids_jsonb ON jids USING gin (load) WITH (fastupdate = on)",
    """CREATE TABLE IF NOT EXISTS salt_returns (
        fun varchar(50) NOT NULL,
        jid varchar(255) NOT NULL,
        return jsonb NOT NULL,
        id varchar(255) NOT NULL,
        success varchar(10) NOT NULL,
        full_ret jsonb NOT NULL,
        alter_time timestamp with time zone DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS idx_salt_returns_id ON salt_returns (id)",
    "CREATE INDEX IF NOT EXISTS idx_salt_returns_jid ON salt_returns (jid)",
    "CREATE INDEX IF NOT EXISTS idx_salt_returns_fun ON salt_returns (fun)",
    "CREATE INDEX IF NOT EXISTS idx_salt_returns_time ON salt_returns (alter_time)",
    "CREATE SEQUENCE IF NOT EXISTS seq_salt_events_id",
    """CREATE TABLE IF NOT EXISTS salt_events (
        id bigint NOT NULL UNIQUE DEFAULT nextval('seq_salt_events_id'),
        tag varchar(255) NOT NULL,
        data jsonb NOT NULL,
        alter_time timestamp with time zone DEFAULT now(),
        master_id varchar(255) NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS idx_salt_events_tag ON salt_events (tag)",
)
TABLES = ("jids", "salt_returns", "salt_events")


class JobCacheUnavailable(CommandExecutionError):
    """The job cache's database cannot be reached or changed; the message says which and why."""


def connection_settings(opts):
    """psycopg2's keyword arguments from the ``returner.pgjsonb.*`` master options."""
    prefix = "returner.pgjsonb."
    names = {"host": "host", "port": "port", "db": "dbname", "user": "user", "pass": "password"}
    settings = {names[key]: opts[prefix + key] for key in names if opts.get(prefix + key)}
    settings["connect_timeout"] = int(opts.get(prefix + "connect_timeout") or 5)
    return settings


def create_schema(**connect):
    """Create the job cache's tables and indexes; returns the tables."""
    import psycopg2  # noqa: PLC0415 (master side only; clients never import this module)

    try:
        connection = psycopg2.connect(**connect)
    except psycopg2.Error as err:
        where = f"{connect.get('host')}:{connect.get('port')}/{connect.get('dbname')}"
        raise JobCacheUnavailable(f"job cache database {where}: {err}".strip()) from err
    try:
        with connection, connection.cursor() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement)
    except psycopg2.Error as err:
        raise JobCacheUnavailable(f"job cache schema: {err}".strip()) from err
    finally:
        connection.close()
    log.info("created the pgjsonb job cache tables %s", ", ".join(TABLES))
    return list(TABLES)
