"""
`make demo`: a local master and client run the life of a release, start to end.

hello 1.0.0 is installed, upgraded to 1.1.0, and a broken 1.2.0 fails its health gate, so 1.1.0
is put back and stays live; a rollback to 1.0.0 then needs no download. Each step is a plain
highstate driven by the client's pillar, exactly as an ops engineer would run it.
"""

import json
import pathlib
import sys
import tempfile
import urllib.request

from demo.lab import Lab, free_port
from tests.support.apps import build_hello

CLIENT = "client-1"
APP = "hello"


def live_version(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return json.loads(answer.read())["version"]
    except OSError as err:
        return f"down ({err})"


def highstate(lab):
    results = lab.salt(CLIENT, "state.apply").get(CLIENT, {})
    if not isinstance(results, dict):
        return False, str(results)
    ours = [value for key, value in results.items() if "shiv_app" in key]
    ok = all(value["result"] for value in results.values())
    return ok, ours[0]["comment"] if ours else "no outpost state ran"


def pillar_for(lab, release, port):
    return {
        "outpost": {
            "root": str(lab.outpost_root(CLIENT)),
            "apps": {
                APP: {
                    "version": release["version"],
                    "source": release["source"],
                    "source_hash": f"sha256={release['sha256']}",
                    "python": "/usr/bin/python3",
                    "port": port,
                    "health_timeout": 10,
                    "keep": 3,
                }
            },
        }
    }


def build_releases(lab, work):
    print("building hello 1.0.0, 1.1.0 and a broken 1.2.0 with shiv ...", flush=True)
    releases = {}
    for version, healthy in (("1.0.0", True), ("1.1.0", True), ("1.2.0", False)):
        manifest = build_hello(pathlib.Path(work), version, healthy=healthy, cache=False)
        releases[version] = dict(manifest, source=lab.publish(manifest))
    return releases


def run_story(lab, releases):
    port = free_port()
    rows = []
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        print(f"highstate with pillar asking for hello {version} ...", flush=True)
        lab.write_pillar(pillar_for(lab, releases[version], port))
        ok, comment = highstate(lab)
        rows.append(
            (f"highstate: hello {version}", "ok" if ok else "FAILED", live_version(port), comment)
        )

    print("rolling back to 1.0.0 with the published files removed ...", flush=True)
    for path in lab.releases_dir.rglob("*.pyz"):
        path.unlink()
    rolled = lab.salt(CLIENT, "shiv_app.rollback_release", APP, "1.0.0").get(CLIENT)
    ok = isinstance(rolled, dict) and rolled.get("live") == "1.0.0"
    rows.append(
        (
            "rollback to 1.0.0 (no download)",
            "ok" if ok else "FAILED",
            live_version(port),
            str(rolled),
        )
    )
    return rows


def print_table(rows):
    headers = ("step", "state", "live version", "what outpost said")
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(3)]
    print()
    for row in (headers, tuple("-" * w for w in widths) + ("-" * 17,), *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, str(row[3])]))


def main():
    with tempfile.TemporaryDirectory(prefix="outpost-demo-") as work:
        print("starting a salt-master, a salt-minion and its supervisord under .demo/ ...")
        with Lab(minions=(CLIENT,)) as lab:
            releases = build_releases(lab, work)
            rows = run_story(lab, releases)
            journal = lab.salt(CLIENT, "shiv_app.read_journal", APP).get(CLIENT, [])
            lab.salt(CLIENT, "shiv_app.remove_app", APP)
    print_table(rows)
    print("\njournal of hello on client-1:")
    for entry in journal:
        reason = entry.get("reason", "")
        print(f"  {entry['time']}  {entry['action']:<8} {entry['version'] or '':<6} {reason}")

    expected = ["1.0.0", "1.1.0", "1.1.0", "1.0.0"]
    if [row[2] for row in rows] != expected:
        print(f"\nunexpected: live versions {[row[2] for row in rows]}, wanted {expected}")
        return 1
    print("\ndemo finished: the broken release never stayed live.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
