"""
What the master keeps of jobs, as text for leak searches: Salt's local job cache files, or the
pgjsonb job cache's rows when the master keeps jobs in PostgreSQL, and the audit trail's files.
"""

import pathlib

import psycopg2

TABLES = ("jids", "salt_returns", "salt_events")


def kept_texts(salt_master):
    """``{place: text}`` for every file or row the master keeps jobs in."""
    config = salt_master.config
    places = {}
    for path in pathlib.Path(config["cachedir"], "jobs").rglob("*"):
        if path.is_file():
            places[f"job cache {path}"] = path.read_bytes().decode("utf-8", "replace")
    if config.get("master_job_cache") == "pgjsonb":
        places.update(_pgjsonb_rows(config))
    audit = (config.get("outpost") or {}).get("audit") or {}
    for key in ("trail", "security_log"):
        path = pathlib.Path(audit.get(key) or "/nonexistent")
        if path.is_file():
            places[f"audit {path}"] = path.read_text(errors="replace")
    return places


def _pgjsonb_rows(config):
    connection = psycopg2.connect(
        host=config["returner.pgjsonb.host"],
        port=config["returner.pgjsonb.port"],
        dbname=config["returner.pgjsonb.db"],
        user=config["returner.pgjsonb.user"],
        password=config["returner.pgjsonb.pass"],
    )
    rows = {}
    try:
        with connection, connection.cursor() as cursor:
            for table in TABLES:
                # The table names are this module's constants, never input.
                cursor.execute(f"SELECT row_to_json(t)::text FROM {table} t")  # noqa: S608
                rows[f"job cache pgjsonb {table}"] = "\n".join(row[0] for row in cursor)
    finally:
        connection.close()
    return rows
