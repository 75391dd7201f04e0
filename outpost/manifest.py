"""
A release on disk: the manifest ``outpost release build`` wrote, the zipapp beside it, and what
later steps add there (``<manifest>.sig`` from ``sign``, the SBOM from ``scan``).

Every command after ``build`` starts from the manifest's path; names read from the manifest are
checked before they become paths, because they end up as file names on the master.
"""

import base64
import binascii
import dataclasses
import json
import re
from pathlib import Path

from outpost.build import sha256_of, write_atomically
from outpost.errors import BadArgument, OutpostError
from outpost.rules import MANIFEST_MAX_DEPTH, app_name_problem, nesting_depth, version_problem

ED25519_SIGNATURE_BYTES = 64
SHA256 = re.compile(r"[0-9a-f]{64}")


class ReleaseError(OutpostError):
    """A release's files are missing, damaged, or do not match its manifest."""


@dataclasses.dataclass(frozen=True)
class Release:
    manifest: dict
    manifest_path: Path

    @property
    def folder(self):
        return self.manifest_path.parent

    @property
    def pyz(self):
        return self.folder / self.manifest["file"]

    @property
    def published_name(self):
        """The zipapp's name where clients fetch it, the formula's default: <app>-<version>.pyz."""
        return f"{self.app}-{self.manifest['version']}.pyz"

    @property
    def signature_path(self):
        return self.manifest_path.with_name(self.manifest_path.name + ".sig")

    @property
    def app(self):
        """The app's name, checked by ``check_manifest`` when the release was loaded."""
        return self.manifest["app"]

    @property
    def sbom_path(self):
        """The SBOM ``scan`` wrote, or None before a scan."""
        sbom = self.manifest.get("scan", {}).get("sbom")  # shape checked by check_manifest
        return self.folder / plain_file_name(sbom["file"], "scan.sbom.file") if sbom else None


def load_release(manifest_path):
    path = Path(manifest_path).absolute()
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadArgument(f"MANIFEST: {manifest_path} does not exist") from None
    except (OSError, ValueError) as err:
        raise ReleaseError(f"{manifest_path}: not a readable JSON manifest ({err})") from None
    except RecursionError:
        raise ReleaseError(f"{manifest_path}: nested deeper than JSON can be read") from None

    if not isinstance(manifest, dict):
        raise ReleaseError(f"{manifest_path}: not a manifest from outpost release build")
    if nesting_depth(manifest) > MANIFEST_MAX_DEPTH:
        raise ReleaseError(f"{manifest_path}: nested deeper than {MANIFEST_MAX_DEPTH} levels")
    if not isinstance(manifest.get("file"), str):
        raise ReleaseError(f"{manifest_path}: file: missing or not a file name")
    check_manifest(manifest, path.name)
    return Release(manifest, path)


def check_manifest(manifest, where):
    """Every field later steps read, checked before any of them acts: each error names its field."""
    plain_file_name(manifest["file"], f"{where}: file")
    if "app" not in manifest:
        raise ReleaseError(f"{where}: app: missing; rebuild with outpost release build --app NAME")
    problem = app_name_problem(manifest["app"])
    if problem:
        raise ReleaseError(f"{where}: app: {manifest['app']!r} {problem}")
    problem = version_problem(manifest.get("version"))
    if problem:
        raise ReleaseError(f"{where}: version: {manifest.get('version')!r} {problem}")
    check_sha256(manifest.get("sha256"), f"{where}: sha256")
    if "scan" in manifest:
        check_scan(manifest["scan"], f"{where}: scan")


def check_sha256(value, field):
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise ReleaseError(f"{field}: expected 64 lowercase hex digits of sha256")


def check_scan(scan, field):
    if not isinstance(scan, dict):
        raise ReleaseError(f"{field}: expected an object, as outpost release scan writes")
    for part in ("bandit", "pip_audit"):
        if part in scan and not isinstance(scan[part], dict):
            raise ReleaseError(f"{field}.{part}: expected an object")
    sbom = scan.get("sbom")
    if sbom is None:
        return
    if not isinstance(sbom, dict):
        raise ReleaseError(f"{field}.sbom: expected an object with file and sha256")
    plain_file_name(sbom.get("file"), f"{field}.sbom.file")
    check_sha256(sbom.get("sha256"), f"{field}.sbom.sha256")


def plain_file_name(name, field):
    """A name for a file in the release folder: no folder part, nothing hidden."""
    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise ReleaseError(f"{field}: {name!r} is not a plain file name")
    return name


def check_artifact(release):
    """The zipapp is there and is the one the manifest describes."""
    pyz = release.pyz
    if not pyz.is_file():
        raise ReleaseError(f"{pyz.name}: the zipapp the manifest names is not beside it")
    if sha256_of(pyz) != release.manifest.get("sha256"):
        raise ReleaseError(f"{pyz.name}: its sha256 differs from the manifest's; rebuild it")


def check_sbom(release):
    sbom = release.sbom_path
    if sbom is None:
        return None
    if not sbom.is_file():
        raise ReleaseError(f"{sbom.name}: the SBOM the manifest names is not beside it")
    if sha256_of(sbom) != release.manifest["scan"]["sbom"].get("sha256"):
        raise ReleaseError(f"{sbom.name}: its sha256 differs from the manifest's; scan again")
    return sbom


def read_signature(release):
    """The base64 signature ``outpost release sign`` wrote, checked for shape only."""
    path = release.signature_path
    try:
        signature = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ReleaseError(f"{path.name}: missing; run outpost release sign first") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReleaseError(f"{path.name}: unreadable ({err})") from None

    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise ReleaseError(f"{path.name}: not base64") from None
    if len(raw) != ED25519_SIGNATURE_BYTES:
        raise ReleaseError(f"{path.name}: not an Ed25519 signature ({len(raw)} bytes)")
    return signature


def write_manifest(release, manifest):
    write_atomically(release.manifest_path, json.dumps(manifest, indent=2) + "\n")
    return Release(manifest, release.manifest_path)
