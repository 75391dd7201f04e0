"""
``outpost release scan|keygen|sign|publish|notify``, checked against the master's own verifier.

Whatever CI sends must pass ``_utils/outpost_webhook.py`` unchanged, so every signature made here
is verified there. Webhooks and artifact stores are small servers on 127.0.0.1 that record what
they were sent. Tests that run bandit, cyclonedx-py or pip-audit are marked slow.
"""

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The checkout's outpost, tests.support and the master's _utils, whichever way pytest started.
REPO = Path(__file__).resolve().parents[2]
for folder in (REPO, REPO / "_utils"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import outpost_webhook  # noqa: E402 (needs the path above)
from outpost.build import BadArgument, build_release  # noqa: E402
from outpost.cli import main  # noqa: E402
from outpost.scan import summarize_audit  # noqa: E402
from outpost.signing import canonical_manifest, hmac_signature  # noqa: E402
from tests.support.apps import build_hello, free_port, hello_source  # noqa: E402

SECRET = "correct horse battery staple"
ALLOWLIST = ["salt://releases/"]
HOOK_PATH = "/hook/outpost/release"


def run_cli(capsys, *argv):
    """Exit status, stdout and stderr of ``outpost`` run in this process."""
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def fake_release(folder, app="hello", version="1.0.0"):
    """A small release as build and scan leave it, without pip: a zip, an SBOM, a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    pyz = folder / f"{app}-{version}.pyz"
    with zipfile.ZipFile(pyz, "w") as archive:
        archive.writestr("__main__.py", f"print('{app} {version}')\n")
    manifest = {
        "app": app,
        "name": app,
        "version": version,
        "file": pyz.name,
        "sha256": sha256_hex(pyz.read_bytes()),
        "size": pyz.stat().st_size,
    }
    sbom = folder / f"{app}-{version}.cdx.json"
    sbom.write_text('{"components": []}\n', encoding="utf-8")
    manifest["scan"] = {"sbom": {"file": sbom.name, "sha256": sha256_hex(sbom.read_bytes())}}
    manifest_path = folder / f"{app}-{version}.manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest_path


def read_manifest(manifest_path):
    return json.loads(Path(manifest_path).read_text(encoding="utf-8"))


@pytest.fixture
def keys(tmp_path, capsys):
    """A fresh key pair: the private key's path, the public key as the master lists it, and the
    public key's path."""
    private, public = tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "signing.pub"
    private.parent.mkdir()
    status, out, _ = run_cli(capsys, "release", "keygen", "--private", private, "--public", public)
    assert status == 0
    return private, out.strip(), public


@pytest.fixture
def signed(tmp_path, keys, capsys):
    """A fake release, signed: its manifest's path."""
    manifest_path = fake_release(tmp_path / "dist")
    status, _, err = run_cli(capsys, "release", "sign", manifest_path, "--key", keys[0])
    assert status == 0, err
    return manifest_path


def publish(capsys, manifest_path, keys, *options):
    """``outpost release publish``, checking the signature against the test's public key."""
    return run_cli(capsys, "release", "publish", manifest_path, "--public", keys[2], *options)


# -- small servers that record what they were sent ---------------------------------------------


@dataclasses.dataclass
class Captured:
    method: str
    path: str
    headers: dict
    body: bytes


class Recorder(http.server.BaseHTTPRequestHandler):
    """A webhook for POST, and for PUT and GET a store that never overwrites on If-None-Match."""

    def do_POST(self):
        self.record()
        self.answer(*self.server.answer)

    def do_PUT(self):
        body = self.record()
        if self.headers.get("If-None-Match") == "*" and self.path in self.server.files:
            self.answer(412, b"exists")
            return
        self.server.files[self.path] = body
        self.answer(201, b"")

    def do_GET(self):
        self.record()
        if self.path in self.server.files:
            self.answer(200, self.server.files[self.path])
        else:
            self.answer(404, b"")

    def record(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        captured = Captured(self.command, self.path, dict(self.headers.items()), body)
        self.server.requests.append(captured)
        return body

    def answer(self, status, body):
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def recording_server(answer=(200, b'{"success": true}'), tls=None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests, server.files, server.answer = [], {}, answer
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}"

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory):
    """A CA and a certificate for 127.0.0.1 it signed: the CA's file and the server's context."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = make_ca()
    server_key, server_cert = make_server_certificate(ca_key, ca_cert)

    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", context


def certificate_builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        certificate_builder("outpost test CA", "outpost test CA", key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_certificate(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        certificate_builder("127.0.0.1", "outpost test CA", key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([address]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(authority, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


# -- the bytes both sides sign ----------------------------------------------------------------


def test_canonical_manifest_is_the_masters():
    manifest = {
        "version": "1.0.0",
        "app": "hello",
        "note": "déjà vu ✓",
        "scan": {"bandit": {"severity": {"low": 1, "high": 0}}},
        "signature": "left out of what is signed",
    }

    assert canonical_manifest(manifest) == outpost_webhook.canonical_manifest(manifest)
    assert b"signature" not in canonical_manifest(manifest)
    assert "déjà vu ✓".encode() in canonical_manifest(manifest)


def test_hmac_header_is_the_masters():
    body = b'{"manifest":{}}'

    ours = hmac_signature(SECRET, 1700000000, body)

    assert ours == outpost_webhook.hmac_signature(SECRET, 1700000000, body)
    assert ours.startswith("sha256=")


# -- keygen and sign --------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path, keys):
    private, public_text, _ = keys

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert len(base64.b64decode(public_text, validate=True)) == 32
    assert (tmp_path / "keys" / "signing.pub").read_text(encoding="ascii") == public_text + "\n"


def test_keygen_never_replaces_a_key(keys, capsys):
    private, _, _ = keys
    before = private.read_bytes()

    status, _, err = run_cli(
        capsys, "release", "keygen", "--private", private, "--public", private.with_suffix(".new")
    )

    assert status == 2
    assert "exists; outpost never replaces a key" in err
    assert private.read_bytes() == before
    assert not private.with_suffix(".new").exists()


def test_signed_manifest_passes_the_masters_check(signed, keys):
    signature = Path(f"{signed}.sig").read_text(encoding="ascii").strip()

    outpost_webhook.check_signature(read_manifest(signed), signature, [keys[1]])


def test_tampered_manifest_fails_the_masters_check(signed, keys):
    manifest = read_manifest(signed)
    signature = Path(f"{signed}.sig").read_text(encoding="ascii").strip()

    manifest["version"] = "1.0.1"

    with pytest.raises(outpost_webhook.RefusedRelease, match="no trusted key signed"):
        outpost_webhook.check_signature(manifest, signature, [keys[1]])


def test_signature_of_another_key_fails_the_masters_check(tmp_path, signed, capsys):
    other = tmp_path / "other"
    other.mkdir()
    status, other_public, _ = run_cli(
        capsys, "release", "keygen", "--private", other / "k.pem", "--public", other / "k.pub"
    )
    signature = Path(f"{signed}.sig").read_text(encoding="ascii").strip()

    assert status == 0
    with pytest.raises(outpost_webhook.RefusedRelease, match="no trusted key signed"):
        outpost_webhook.check_signature(read_manifest(signed), signature, [other_public.strip()])


def test_sign_refuses_a_zipapp_its_manifest_does_not_describe(tmp_path, keys, capsys):
    manifest_path = fake_release(tmp_path / "dist")
    with zipfile.ZipFile(tmp_path / "dist" / "hello-1.0.0.pyz", "a") as archive:
        archive.writestr("extra.py", "")

    status, _, err = run_cli(capsys, "release", "sign", manifest_path, "--key", keys[0])

    assert status == 1
    assert "hello-1.0.0.pyz: its sha256 differs from the manifest's" in err
    assert not Path(f"{manifest_path}.sig").exists()


# -- notify -----------------------------------------------------------------------------------


def notify(capsys, manifest_path, hook, *extra, artifact="salt://releases/hello/hello-1.0.0.pyz"):
    argv = ["release", "notify", manifest_path, "--hook", hook, "--artifact-url", artifact]
    return run_cli(capsys, *argv, *extra)


def test_announcement_passes_the_masters_checks(signed, keys, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server() as hook:
        status, out, err = notify(capsys, signed, hook.url + HOOK_PATH)
    [request] = hook.requests

    body = outpost_webhook.verify_announcement(
        request.body, request.headers, SECRET, [keys[1]], ALLOWLIST
    )
    assert status == 0
    assert out.startswith("HTTP 200 OK\n")
    assert (request.method, request.path) == ("POST", HOOK_PATH)
    assert outpost_webhook.header(request.headers, "Content-Type") == "application/json"
    assert body["manifest"] == read_manifest(signed)
    assert body["artifact_url"] == "salt://releases/hello/hello-1.0.0.pyz"
    assert SECRET not in out + err
    assert SECRET.encode() not in request.body + json.dumps(request.headers).encode()


def test_old_or_replayed_announcement_is_refused(signed, keys, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)
    with recording_server() as hook:
        notify(capsys, signed, hook.url + HOOK_PATH)
    [request] = hook.requests
    sent_at = int(outpost_webhook.header(request.headers, "X-Outpost-Timestamp"))

    later = sent_at + outpost_webhook.MAX_AGE_SECONDS + 1
    with pytest.raises(outpost_webhook.RefusedRelease, match="old"):
        outpost_webhook.verify_announcement(
            request.body, request.headers, SECRET, [keys[1]], ALLOWLIST, now=later
        )

    # Replayed with a fresh timestamp, the HMAC no longer matches.
    replayed = dict(request.headers, **{"X-Outpost-Timestamp": str(later)})
    with pytest.raises(outpost_webhook.RefusedRelease, match="does not match the body"):
        outpost_webhook.verify_announcement(
            request.body, replayed, SECRET, [keys[1]], ALLOWLIST, now=later
        )


def test_announcement_changed_on_the_way_is_refused(signed, keys, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)
    with recording_server() as hook:
        notify(capsys, signed, hook.url + HOOK_PATH)
    [request] = hook.requests

    changed = request.body.replace(b"salt://releases/hello/", b"salt://releases/evil/")

    with pytest.raises(outpost_webhook.RefusedRelease, match="does not match the body"):
        outpost_webhook.verify_announcement(changed, request.headers, SECRET, [keys[1]], ALLOWLIST)


def test_refused_announcement_exits_non_zero(signed, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server(answer=(403, b'{"error": "signature"}')) as hook:
        status, out, _ = notify(capsys, signed, hook.url + HOOK_PATH)

    assert status == 1
    assert out == 'HTTP 403 Forbidden\n{"error": "signature"}\n'


@pytest.mark.parametrize(
    "body",
    [b'{"success": false}', b'{"success": "false"}', b'[{"success": false}]', b"<html>ok</html>"],
)
def test_an_announcement_the_masters_bus_did_not_take_exits_non_zero(
    signed, capsys, monkeypatch, body
):
    """salt-api answers HTTP 200 with {"success": false} when it could not fire the event, and
    notify reported that as delivered: the release was never rolled out. A proxy's page or a
    wrong path answering 200 says no more."""
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server(answer=(200, body)) as hook:
        status, out, err = notify(capsys, signed, hook.url + HOOK_PATH)

    assert status == 1
    assert out.startswith("HTTP 200 OK\n")
    assert "may not be on the master's event bus: post it again" in err


def test_notify_does_not_follow_a_redirect(signed, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server(answer=(307, b"")) as hook:
        status, out, _ = notify(capsys, signed, hook.url + HOOK_PATH)

    assert status == 1
    assert out == "HTTP 307 Temporary Redirect\n"
    assert len(hook.requests) == 1


def test_notify_takes_the_secret_only_from_the_environment(signed, capsys, monkeypatch):
    monkeypatch.delenv("OUTPOST_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("CI_HOOK_SECRET", SECRET)

    with recording_server() as hook:
        unset = notify(capsys, signed, hook.url + HOOK_PATH)
        as_argument = notify(capsys, signed, hook.url + HOOK_PATH, "--secret", SECRET)
        named = notify(capsys, signed, hook.url + HOOK_PATH, "--secret-env", "CI_HOOK_SECRET")

    assert unset[0] == 2
    assert "the environment variable OUTPOST_WEBHOOK_SECRET is not set" in unset[2]
    assert as_argument[0] == 2
    assert named[0] == 0
    assert len(hook.requests) == 1


def test_notify_over_https_trusts_a_private_ca(signed, keys, private_ca, capsys, monkeypatch):
    ca_file, server_tls = private_ca
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server(tls=server_tls) as hook:
        status, _, err = notify(capsys, signed, hook.url + HOOK_PATH, "--cacert", ca_file)
    [request] = hook.requests

    assert status == 0, err
    outpost_webhook.verify_announcement(request.body, request.headers, SECRET, [keys[1]], ALLOWLIST)


def test_notify_refuses_plain_http_beyond_this_machine(signed, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    status, _, err = notify(capsys, signed, "http://salt.example.com:8000" + HOOK_PATH)

    assert status == 2
    assert "--hook: 'http://salt.example.com:8000/hook/outpost/release' is not https://" in err


def test_notify_refuses_an_artifact_url_naming_another_file(signed, capsys, monkeypatch):
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server() as hook:
        status, _, err = notify(
            capsys, signed, hook.url + HOOK_PATH, artifact="salt://releases/hello/other.pyz"
        )

    assert status == 2
    assert "does not end in /hello-1.0.0.pyz" in err
    assert hook.requests == []


@pytest.mark.parametrize(
    "artifact",
    [
        "http://[bad/hello-1.0.0.pyz",
        "http://store.example.com/hello-1.0.0.pyz",
        "file:///srv/hello-1.0.0.pyz",
        "https://store.example.com:99999/hello-1.0.0.pyz",
    ],
)
def test_notify_refuses_an_artifact_url_clients_could_not_fetch(
    signed, capsys, monkeypatch, artifact
):
    """http://[bad/... was posted to the master as it was."""
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    with recording_server() as hook:
        status, _, err = notify(capsys, signed, hook.url + HOOK_PATH, artifact=artifact)

    assert status == 2
    assert "--artifact-url: " in err
    assert hook.requests == []


def test_notify_refuses_credentials_in_the_artifact_url(signed, capsys, monkeypatch):
    """https://u:p@store/... was announced, and the credentials went to the master's events."""
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)
    artifact = "https://ci:hunter2@store.example.com/hello/hello-1.0.0.pyz"

    with recording_server() as hook:
        status, out, err = notify(capsys, signed, hook.url + HOOK_PATH, artifact=artifact)

    assert status == 2
    assert "--artifact-url: the URL holds credentials" in err
    assert "hunter2" not in out + err
    assert hook.requests == []


@pytest.mark.parametrize("port", ["99999", "abc", "0"])
def test_publish_and_notify_refuse_a_port_out_of_range(signed, keys, capsys, monkeypatch, port):
    """Port 99999 was used as 99999 modulo 65536, and 'abc' failed late in http.client."""
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    published = publish(capsys, signed, keys, "--url", f"https://127.0.0.1:{port}/")
    announce = notify(capsys, signed, f"http://127.0.0.1:{port}{HOOK_PATH}")

    assert published[0] == announce[0] == 2
    assert "--url: " in published[2]
    assert "--hook: " in announce[2]
    for err in (published[2], announce[2]):
        assert "the port is not a number from 1 to 65535" in err
        assert "Traceback" not in err


# -- publish ----------------------------------------------------------------------------------


def test_public_key_prints_what_keygen_wrote(keys, capsys):
    status, out, _ = run_cli(capsys, "release", "public-key", "--key", keys[0])

    assert status == 0
    assert out == keys[2].read_text(encoding="ascii")


@pytest.mark.parametrize("forgery", ["random bytes", "another key", "another manifest"])
def test_publish_refuses_a_signature_that_does_not_verify(tmp_path, signed, keys, capsys, forgery):
    """A .sig of 64 random bytes was published, and then the correctly signed release never
    could be: its .sig 'already exists with other content'."""
    signature = signed.with_name(signed.name + ".sig")
    if forgery == "random bytes":
        signature.write_text(base64.b64encode(os.urandom(64)).decode() + "\n", encoding="ascii")
    elif forgery == "another key":
        other = tmp_path / "other.pem", tmp_path / "other.pub"
        run_cli(capsys, "release", "keygen", "--private", other[0], "--public", other[1])
        run_cli(capsys, "release", "sign", signed, "--key", other[0])
    else:
        rewrite_manifest(signed, name="another")
    root = tmp_path / "releases"
    root.mkdir()

    status, out, err = publish(capsys, signed, keys, "--root", root)

    assert status == 1
    assert f"{signature.name}: does not verify against this manifest and the --public key" in err
    assert out == ""
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("content", ["not base64!", "QUJD", "-----BEGIN PRIVATE KEY-----"])
def test_publish_refuses_a_public_key_file_it_cannot_use(tmp_path, signed, capsys, content):
    public = tmp_path / "bad.pub"
    public.write_text(content + "\n", encoding="ascii")
    root = tmp_path / "releases"
    root.mkdir()

    status, _, err = run_cli(
        capsys, "release", "publish", signed, "--public", public, "--root", root
    )

    assert status == 2
    assert f"--public: {public} is not an Ed25519 public key" in err
    assert list(root.iterdir()) == []


def test_publish_copies_the_release_and_prints_its_url(tmp_path, signed, keys, capsys):
    root = tmp_path / "releases"
    root.mkdir()

    status, out, err = publish(capsys, signed, keys, "--root", root)

    published = sorted(path.name for path in (root / "hello").iterdir())
    assert status == 0, err
    assert out == "salt://releases/hello/hello-1.0.0.pyz\n"
    assert published == [
        "hello-1.0.0.cdx.json",
        "hello-1.0.0.manifest.json",
        "hello-1.0.0.manifest.json.sig",
        "hello-1.0.0.pyz",
    ]
    for name in published:
        assert (root / "hello" / name).read_bytes() == (signed.parent / name).read_bytes()
        assert stat.S_IMODE((root / "hello" / name).stat().st_mode) == 0o644


def test_publish_again_is_harmless(tmp_path, signed, keys, capsys):
    root = tmp_path / "releases"
    root.mkdir()
    prefix = "salt://outpost/releases/"

    first = publish(capsys, signed, keys, "--root", root, "--url-prefix", prefix)
    again = publish(capsys, signed, keys, "--root", root, "--url-prefix", prefix)

    assert first == again
    assert first[:2] == (0, "salt://outpost/releases/hello/hello-1.0.0.pyz\n")
    assert not [path for path in (root / "hello").iterdir() if path.name.startswith(".")]


def test_publish_never_changes_a_published_file(tmp_path, signed, keys, capsys):
    root = tmp_path / "releases"
    (root / "hello").mkdir(parents=True)
    (root / "hello" / "hello-1.0.0.manifest.json").write_text("{}\n", encoding="utf-8")

    status, out, err = publish(capsys, signed, keys, "--root", root)

    assert status == 1
    assert "hello-1.0.0.manifest.json already exists with other content" in err
    assert out == ""
    assert [path.name for path in (root / "hello").iterdir()] == ["hello-1.0.0.manifest.json"]
    assert (root / "hello" / "hello-1.0.0.manifest.json").read_text(encoding="utf-8") == "{}\n"


@pytest.mark.parametrize(
    "prefix",
    [
        "http://evil.example.com",
        "javascript:x",
        "salt://releases\n",
        "salt://releases/../../",
        "",
        "https://ci:hunter2@store.example.com/releases",
        "salt://releases?x",
    ],
)
def test_publish_refuses_a_url_prefix_clients_could_not_fetch(
    tmp_path, signed, keys, capsys, prefix
):
    """Such prefixes were printed as the artifact URL after the files were copied, and an empty
    one silently became salt://releases."""
    root = tmp_path / "releases"
    root.mkdir()

    status, out, err = publish(capsys, signed, keys, "--root", root, "--url-prefix", prefix)

    assert status == 2
    assert "--url-prefix: " in err
    assert out == ""
    assert list(root.iterdir()) == []


def test_publish_refuses_an_unsigned_release(tmp_path, keys, capsys):
    manifest_path = fake_release(tmp_path / "dist")
    (tmp_path / "releases").mkdir()

    status, _, err = publish(capsys, manifest_path, keys, "--root", tmp_path / "releases")

    assert status == 1
    assert "hello-1.0.0.manifest.json.sig: missing; run outpost release sign first" in err
    assert list((tmp_path / "releases").iterdir()) == []


def test_publish_refuses_plain_http(signed, keys, capsys):
    with recording_server() as store:
        status, out, err = publish(capsys, signed, keys, "--url", store.url + "/")

    assert status == 2
    assert "is not https://; plain http is refused" in err
    assert out == ""
    assert store.requests == []


def test_publish_uploads_over_https_trusting_a_private_ca(
    signed, keys, private_ca, capsys, monkeypatch
):
    ca_file, server_tls = private_ca
    monkeypatch.setenv("STORE_TOKEN", "s3cr3t-token")
    options = ["--cacert", ca_file, "--token-env", "STORE_TOKEN"]

    with recording_server(tls=server_tls) as store:
        url = store.url + "/artifacts/"
        status, out, err = publish(capsys, signed, keys, "--url", url, *options)
        again = publish(capsys, signed, keys, "--url", url, *options)

    puts = [request for request in store.requests if request.method == "PUT"]
    assert status == 0, err
    assert out == f"{url}hello/hello-1.0.0.pyz\n"
    assert again[:2] == (0, out)
    assert (
        store.files["/artifacts/hello/hello-1.0.0.pyz"]
        == (signed.parent / "hello-1.0.0.pyz").read_bytes()
    )
    assert [request.path.rsplit("/", 1)[1] for request in puts[:4]] == [
        "hello-1.0.0.pyz",
        "hello-1.0.0.cdx.json",
        "hello-1.0.0.manifest.json",
        "hello-1.0.0.manifest.json.sig",
    ]
    assert {request.headers["Authorization"] for request in puts} == {"Bearer s3cr3t-token"}
    assert "s3cr3t-token" not in out + err + again[1] + again[2]


def test_publish_over_https_never_changes_a_stored_file(signed, keys, private_ca, capsys):
    ca_file, server_tls = private_ca

    with recording_server(tls=server_tls) as store:
        store.files["/hello/hello-1.0.0.manifest.json"] = b"{}\n"
        status, _, err = publish(capsys, signed, keys, "--url", store.url, "--cacert", ca_file)

    assert status == 1
    assert "hello/hello-1.0.0.manifest.json already holds other content" in err
    assert store.files["/hello/hello-1.0.0.manifest.json"] == b"{}\n"


def test_publish_over_https_checks_the_certificate(signed, keys, private_ca, capsys):
    _, server_tls = private_ca

    with recording_server(tls=server_tls) as store:
        status, _, err = publish(capsys, signed, keys, "--url", store.url)

    assert status == 1
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert store.requests == []


# -- build --app ------------------------------------------------------------------------------


def test_build_records_the_app_name(tmp_path):
    default = build_hello(tmp_path, "1.0.0")
    named = build_hello(tmp_path, "1.0.0", app_name="hello")

    assert default["app"] == "outpost-hello"
    assert named["app"] == "hello"
    assert read_manifest(named["manifest_path"])["app"] == "hello"
    assert named["sha256"] == default["sha256"]


@pytest.mark.parametrize("name", ["Hello", "1hello", "hello.world", "h" * 41, ""])
def test_build_refuses_a_bad_app_name_before_building(tmp_path, name):
    with pytest.raises(BadArgument, match="--app: .* is not an app name"):
        build_release(hello_source(tmp_path, "1.0.0"), out_dir=tmp_path / "dist", app_name=name)

    assert not (tmp_path / "dist").exists()


# -- scan -------------------------------------------------------------------------------------


def test_audit_report_becomes_findings():
    report = {
        "dependencies": [
            {"name": "waitress", "version": "3.0.0", "vulns": [{"id": "GHSA-1", "aliases": []}]},
            {"name": "six", "version": "1.17.0", "vulns": []},
        ]
    }

    audit = summarize_audit(report)

    assert audit["status"] == "vulnerable"
    assert audit["audited"] == 2
    assert audit["findings"] == [
        {"name": "waitress", "version": "3.0.0", "id": "GHSA-1", "aliases": [], "fix_versions": []}
    ]


def test_audit_that_could_check_nothing_is_unavailable():
    report = {"dependencies": [{"name": "waitress", "skip_reason": "Dependency not found"}]}

    audit = summarize_audit(report)

    assert audit["status"] == "unavailable"
    assert "Dependency not found" in audit["reason"]


def test_audit_that_checked_some_is_incomplete():
    report = {
        "dependencies": [
            {"name": "waitress", "version": "3.0.2", "vulns": []},
            {"name": "private-lib", "skip_reason": "Dependency not found"},
        ]
    }

    audit = summarize_audit(report)

    assert (audit["status"], audit["findings"], audit["skipped"]) == (
        "incomplete",
        [],
        ["private-lib"],
    )


@pytest.mark.slow
def test_scan_records_bandit_sbom_and_audit(tmp_path, keys, capsys):
    release = build_hello(tmp_path, "1.0.0", app_name="hello")
    manifest_path = Path(release["manifest_path"])
    run_cli(capsys, "release", "sign", manifest_path, "--key", keys[0])

    status, out, err = run_cli(capsys, "release", "scan", manifest_path)

    scan = read_manifest(manifest_path)["scan"]
    assert status == 0, err
    assert json.loads(out) == scan
    assert scan["bandit"]["targets"] == ["outpost_hello"]
    assert scan["bandit"]["severity"] == {"high": 0, "medium": 0, "low": 0}
    assert scan["bandit"]["tool"] == "bandit 1.9.4"
    assert scan["pip_audit"]["status"] in {"passed", "vulnerable", "incomplete", "unavailable"}

    sbom_path = manifest_path.parent / scan["sbom"]["file"]
    assert sbom_path.name == "outpost-hello-1.0.0.cdx.json"
    assert scan["sbom"]["sha256"] == sha256_hex(sbom_path.read_bytes())
    sbom = json.loads(sbom_path.read_text(encoding="utf-8"))
    assert sbom["bomFormat"] == "CycloneDX"
    assert {(c["name"], c["version"]) for c in sbom["components"]} >= {
        ("outpost-hello", "1.0.0"),
        ("waitress", release_version(release, "waitress")),
    }
    # The signature covered the manifest before the scan changed it.
    assert not Path(f"{manifest_path}.sig").exists()


def release_version(release, distribution):
    with zipfile.ZipFile(release["path"]) as archive:
        for name in archive.namelist():
            if name.startswith(f"site-packages/{distribution}-") and name.endswith("/METADATA"):
                return name.split("/")[1].removesuffix(".dist-info").split("-")[1]
    raise AssertionError(f"{distribution} is not in {release['path']}")


def add_unsafe_module(release):
    """Put code with a HIGH severity bandit finding into the app, and fix up the manifest."""
    pyz = Path(release["path"])
    with zipfile.ZipFile(pyz, "a") as archive:
        archive.writestr(
            "site-packages/outpost_hello/unsafe.py",
            "import subprocess\n\n\ndef run(command):\n"
            "    return subprocess.call(command, shell=True)\n",
        )
    manifest = read_manifest(release["manifest_path"])
    manifest.update(sha256=sha256_hex(pyz.read_bytes()), size=pyz.stat().st_size)
    Path(release["manifest_path"]).write_text(json.dumps(manifest), encoding="utf-8")
    return Path(release["manifest_path"])


@pytest.mark.slow
def test_scan_fails_on_a_high_severity_finding_unless_allowed(tmp_path, capsys):
    manifest_path = add_unsafe_module(build_hello(tmp_path, "1.0.0", app_name="hello"))

    refused = run_cli(capsys, "release", "scan", manifest_path)
    allowed = run_cli(capsys, "release", "scan", manifest_path, "--allow-high")

    assert refused[0] == 1
    assert "B602 outpost_hello/unsafe.py:5" in refused[2]
    assert "fix them, or pass --allow-high" in refused[2]
    assert allowed[0] == 0
    bandit = read_manifest(manifest_path)["scan"]["bandit"]
    assert bandit["severity"]["high"] == 1
    assert bandit["allow_high"] is True


@pytest.mark.slow
def test_unreachable_audit_service_is_recorded_not_fatal(tmp_path, capsys, monkeypatch):
    manifest_path = build_hello(tmp_path, "1.0.0", app_name="hello")["manifest_path"]
    # Nothing listens on this port: every request pip-audit makes fails to connect.
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    status, _, err = run_cli(capsys, "release", "scan", manifest_path)

    audit = read_manifest(manifest_path)["scan"]["pip_audit"]
    assert status == 0, err
    assert audit["status"] == "unavailable"
    assert audit["reason"]


# -- the CI sequence --------------------------------------------------------------------------


@pytest.mark.slow
def test_release_script_runs_the_ci_sequence(tmp_path, keys):
    root = tmp_path / "releases"
    root.mkdir()
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        OUTPOST_APP_SOURCE=str(hello_source(tmp_path, "1.0.0")),
        OUTPOST_APP="hello",
        OUTPOST_OUT=str(tmp_path / "dist"),
        OUTPOST_SIGNING_KEY=keys[0].read_text(encoding="ascii"),
        OUTPOST_PUBLISH_ROOT=str(root),
        OUTPOST_WEBHOOK_SECRET=SECRET,
    )
    env.pop("GITHUB_ACTIONS", None)

    with recording_server() as hook:
        env["OUTPOST_HOOK_URL"] = hook.url + HOOK_PATH
        result = subprocess.run(
            ["bash", str(REPO / "ci" / "release.sh")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
    [request] = hook.requests

    assert result.returncode == 0, result.stdout + result.stderr
    body = outpost_webhook.verify_announcement(
        request.body, request.headers, SECRET, [keys[1]], ALLOWLIST
    )
    assert body["artifact_url"] == "salt://releases/hello/hello-1.0.0.pyz"
    assert body["manifest"]["scan"]["bandit"]["issues"] == 0
    assert (root / "hello" / "outpost-hello-1.0.0.cdx.json").is_file()
    assert SECRET not in result.stdout + result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def ship(tmp_path, keys, hook, **settings):
    """``ci/release.sh ship`` over a fake release, publishing into a folder: its result."""
    fake_release(tmp_path / "dist")
    root = tmp_path / "releases"
    root.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        OUTPOST_OUT=str(tmp_path / "dist"),
        OUTPOST_SIGNING_KEY=keys[0].read_text(encoding="ascii"),
        OUTPOST_PUBLISH_ROOT=str(root),
        OUTPOST_WEBHOOK_SECRET=SECRET,
        OUTPOST_HOOK_URL=hook.url + HOOK_PATH,
        **settings,
    )
    env.pop("GITHUB_ACTIONS", None)
    return subprocess.run(
        ["bash", str(REPO / "ci" / "release.sh"), "ship"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_release_script_checks_the_signature_against_the_trusted_key(tmp_path, keys, capsys):
    """Nothing checked the signature before publish; a key the master does not trust must stop
    the release before anything is published."""
    other = tmp_path / "other.pem", tmp_path / "other.pub"
    run_cli(capsys, "release", "keygen", "--private", other[0], "--public", other[1])

    with recording_server() as hook:
        trusted = ship(tmp_path / "trusted", keys, hook, OUTPOST_SIGNING_PUBLIC_KEY=keys[1])
        untrusted = ship(
            tmp_path / "untrusted", keys, hook, OUTPOST_SIGNING_PUBLIC_KEY=other[1].read_text()
        )

    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert untrusted.returncode == 1
    assert "does not verify against this manifest and the --public key" in untrusted.stderr
    assert list((tmp_path / "untrusted" / "releases").iterdir()) == []
    assert len(hook.requests) == 1


# -- bad manifests and URLs: a clear error naming the field, nothing copied (review finding 7) --


def rewrite_manifest(manifest_path, **changes):
    manifest = read_manifest(manifest_path)
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    manifest_path.write_text(json.dumps(manifest) + "\n", encoding="utf-8")
    return manifest_path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": None}, "version"),
        ({"version": "../../x"}, "version"),
        ({"version": "1.0.0-."}, "version"),
        ({"app": None}, "app"),
        ({"app": "../x"}, "app"),
        ({"app": 7}, "app"),
        ({"app": "con"}, "app"),
        ({"app": "heartbeat"}, "app"),
        ({"file": None}, "file"),
        ({"version": "01.0.0"}, "version"),
        ({"sha256": "x"}, "sha256"),
        ({"scan": "x"}, "scan"),
        ({"scan": {"sbom": "x"}}, "scan.sbom"),
        ({"scan": {"sbom": {"file": "../x", "sha256": "0" * 64}}}, "scan.sbom.file"),
        ({"scan": {"bandit": []}}, "scan.bandit"),
    ],
)
@pytest.mark.parametrize("command", ["scan", "sign", "publish", "notify"])
def test_malformed_manifest_is_refused_naming_the_field(
    tmp_path, keys, capsys, monkeypatch, changes, field, command
):
    """A manifest without a version or an app, or with app '../x' or scan 'x', crashed or was
    signed."""
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)
    manifest_path = rewrite_manifest(fake_release(tmp_path / "dist"), **changes)
    root = tmp_path / "releases"
    root.mkdir()
    extra = {
        "scan": [],
        "sign": ["--key", keys[0]],
        "publish": ["--public", keys[2], "--root", root],
        "notify": ["--hook", "https://salt.example.com:8000" + HOOK_PATH, "--artifact-url", "x"],
    }[command]

    status, _, err = run_cli(capsys, "release", command, manifest_path, *extra)

    assert status == 1
    assert f": {field}: " in err
    assert "Traceback" not in err
    assert list(root.iterdir()) == []
    assert not manifest_path.with_name(manifest_path.name + ".sig").exists()


@pytest.mark.parametrize("depth", [40, 995, 100_000])
def test_a_deeply_nested_manifest_is_refused(tmp_path, keys, capsys, depth):
    """A manifest of 100000 '[' ended in a RecursionError traceback, and one nested 991 deep
    was read but crashed while being signed."""
    manifest_path = fake_release(tmp_path / "dist")
    text = manifest_path.read_text(encoding="utf-8")
    nested = "[" * depth + "]" * depth if depth < 1000 else "[" * depth
    manifest_path.write_text(text.replace('"app": "hello"', f'"x": {nested}, "app": "hello"'))

    status, _, err = run_cli(capsys, "release", "sign", manifest_path, "--key", keys[0])

    assert status == 1
    assert "hello-1.0.0.manifest.json: nested deeper than " in err
    assert "Traceback" not in err
    assert not manifest_path.with_name(manifest_path.name + ".sig").exists()


@pytest.mark.parametrize("url", ["http://[::1", "https://[::1/x", "https://[not-an-ip]/"])
def test_publish_and_notify_refuse_an_unparsable_url(signed, keys, capsys, monkeypatch, url):
    """'https://[::1' ended in a ValueError traceback from urlsplit."""
    monkeypatch.setenv("OUTPOST_WEBHOOK_SECRET", SECRET)

    published = publish(capsys, signed, keys, "--url", url)
    announce = notify(capsys, signed, url)

    assert published[0] == 2
    assert "--url: " in published[2]
    assert "is not a URL" in published[2]
    assert announce[0] == 2
    assert "--hook: " in announce[2]
    assert "Traceback" not in published[2] + announce[2]


def test_published_zipapp_is_where_the_formula_fetches_it_by_default(tmp_path, keys, capsys):
    """publish wrote outpost-hello-1.1.0.pyz; the formula fetched <app>/<app>-<version>.pyz."""
    manifest_path = fake_release(tmp_path / "dist", app="hello", version="1.1.0")
    pyz = manifest_path.with_name("hello-1.1.0.pyz")
    pyz.rename(pyz.with_name("outpost-hello-1.1.0.pyz"))
    rewrite_manifest(manifest_path, file="outpost-hello-1.1.0.pyz")
    assert run_cli(capsys, "release", "sign", manifest_path, "--key", keys[0])[0] == 0
    root = tmp_path / "releases"
    root.mkdir()
    defaults = yaml.safe_load((REPO / "salt/outpost/defaults.yaml").read_text(encoding="utf-8"))

    status, out, err = publish(capsys, manifest_path, keys, "--root", root)

    default_source = f"{defaults['outpost']['artifacts']}/hello/hello-1.1.0.pyz"
    assert status == 0, err
    assert out.strip() == default_source
    published = root / default_source.removeprefix("salt://releases/")
    assert published.read_bytes() == (manifest_path.parent / "outpost-hello-1.1.0.pyz").read_bytes()


@pytest.mark.parametrize("bad_key", ["not base64!", "QUJD", 7])
def test_a_malformed_trusted_key_is_refused_naming_the_setting(signed, keys, bad_key):
    """A malformed outpost:releases:signing_keys entry raised binascii.Error in receive."""
    body = json.dumps(
        {
            "manifest": read_manifest(signed),
            "signature": signed.with_name(signed.name + ".sig").read_text(encoding="ascii").strip(),
            "artifact_url": "salt://releases/hello/hello-1.0.0.pyz",
        }
    )
    manifest = json.loads(body)["manifest"]
    signature = json.loads(body)["signature"]

    with pytest.raises(
        outpost_webhook.RefusedRelease, match=r"^outpost:releases:signing_keys\[0\]: "
    ):
        outpost_webhook.check_signature(manifest, signature, [bad_key, keys[1]])
    with pytest.raises(outpost_webhook.RefusedRelease, match=r"^outpost:releases:signing_keys: "):
        outpost_webhook.check_signature(manifest, signature, keys[1])
