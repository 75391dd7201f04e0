"""
Prism (``@stoplight/prism-cli``, installed by ``npm ci`` from package-lock.json) as a validating
proxy between the Cloudflare SDK and the API stand-in: every request and every answer is checked
against Cloudflare's own OpenAPI spec, and with ``--errors`` a violation becomes an error answer
the SDK raises on, so a test cannot pass on traffic the real API would not send or accept.
"""

import json
import pathlib
import re
import socket
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
PRISM = REPO / "node_modules" / ".bin" / "prism"
SPEC = REPO.parent / "shared" / "cloudflare" / "openapi-subset.json"
START_TIMEOUT = 120


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def null_results_allowed(node):
    """Several error envelopes in the spec declare ``result`` as ``enum: [null]`` on a non-null
    type without ``nullable: true``, which no answer can satisfy (OpenAPI 3.0 needs ``nullable``
    for ``null``), while Cloudflare answers errors with ``"result": null``. Mark exactly those
    schemas nullable; nothing else in the spec changes."""
    if isinstance(node, dict):
        if node.get("enum") == [None] and not node.get("nullable"):
            node["nullable"] = True
        for value in node.values():
            null_results_allowed(value)
    elif isinstance(node, list):
        for value in node:
            null_results_allowed(value)
    return node


def read_only_not_required(node):
    """OpenAPI 3.0: a required property that is ``readOnly`` is required in answers only. Prism
    requires it in requests too (the ruleset rules' ``version`` and ``last_updated``), so no
    client could add a rule; drop such properties from ``required`` lists."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and isinstance(node.get("required"), list):
            node["required"] = [
                name
                for name in node["required"]
                if not (isinstance(properties.get(name), dict) and properties[name].get("readOnly"))
            ]
        for value in node.values():
            read_only_not_required(value)
    elif isinstance(node, list):
        for value in node:
            read_only_not_required(value)
    return node


def write_spec(destination):
    spec = read_only_not_required(null_results_allowed(json.loads(SPEC.read_text())))
    destination = pathlib.Path(destination)
    destination.write_text(json.dumps(spec))
    return destination


class Prism:
    def __init__(self, upstream, log_path, port=None):
        self.upstream = upstream
        self.log_path = pathlib.Path(log_path)
        self.spec = self.log_path.with_name("cloudflare-openapi.json")
        self.port = port or free_port()
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        for needed, hint in ((PRISM, "run `make setup` (npm ci)"), (SPEC, "shared/ beside it")):
            if not needed.exists():
                raise RuntimeError(f"{needed} is missing: {hint}")
        write_spec(self.spec)
        command = [str(PRISM), "proxy", str(self.spec), self.upstream, "--errors"]
        command += ["-h", "127.0.0.1", "-p", str(self.port)]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "fatal" in text or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"prism did not start:\n{text}")
            if "Prism is listening" in text:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prism did not start in {START_TIMEOUT} s")

    def violations(self):
        """What Prism logged as not matching the spec, request or answer."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if re.search(r"\b(error|fatal)\b", line)]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
