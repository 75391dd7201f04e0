"""The cloudflared stand-in (tests/standins/cloudflared.py) as "releases" on the master."""

import base64
import hashlib
import json
import os
import pathlib
import sys
import uuid

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
STANDIN = REPO / "tests" / "standins" / "cloudflared.py"
VERSIONS = ("2025.8.1", "2025.9.0")


def hash_of(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def make_token(tunnel):
    fields = {
        "a": uuid.uuid4().hex,
        "t": tunnel,
        "s": base64.b64encode(os.urandom(32)).decode(),
    }
    return base64.b64encode(json.dumps(fields).encode()).decode()


def publish_standin(ext_tree, flavour, edge, remote_ingress):
    """Wrappers that run the stand-in as each of ``VERSIONS``, under
    salt://artifacts/<flavour>/, all sharing one edge port and one file of remotely managed
    ingress. Returns each version's state arguments."""
    folder = ext_tree / "artifacts" / flavour
    folder.mkdir(parents=True, exist_ok=True)
    releases = {}
    for version in VERSIONS:
        wrapper = folder / f"cloudflared-{version}"
        wrapper.write_text(
            f"#!{sys.executable}\n"
            f"# Stands in for cloudflared {version}; see tests/standins/cloudflared.py.\n"
            "import os, runpy\n"
            f"os.environ['OUTPOST_STANDIN_VERSION'] = {version!r}\n"
            f"os.environ['OUTPOST_STANDIN_EDGE'] = '127.0.0.1:{edge}'\n"
            f"os.environ['OUTPOST_STANDIN_REMOTE_INGRESS'] = {str(remote_ingress)!r}\n"
            f"runpy.run_path({str(STANDIN)!r}, run_name='__main__')\n"
        )
        releases[version] = {
            "version": version,
            "source": f"salt://artifacts/{flavour}/{wrapper.name}",
            "source_hash": "sha256=" + hash_of(wrapper),
        }
    return releases
