"""
Scan a built release before it is signed: bandit over the app's own code, a CycloneDX SBOM of
every distribution in the zipapp, and pip-audit over the pinned dependencies.

The results go into the manifest under ``scan``, so the signature covers them, and the SBOM is
written beside the manifest as ``<name>-<version>.cdx.json``. pip-audit needs its vulnerability
service; when that cannot be reached the audit is recorded as unavailable and the scan goes on.
Each tool runs as a subprocess of this interpreter, so the pinned versions installed with outpost
are the ones that run.
"""

import collections
import csv
import dataclasses
import datetime
import email.parser
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name

from outpost.build import sha256_of
from outpost.errors import OutpostError
from outpost.manifest import check_artifact, load_release, write_manifest

SITE = "site-packages/"
SEVERITIES = ("high", "medium", "low")
SBOM_SPEC_VERSION = "1.6"
# module to run, distribution that ships it
TOOLS = {"bandit": "bandit", "cyclonedx_py": "cyclonedx-bom", "pip_audit": "pip-audit"}
TOOL_TIMEOUT_SECONDS = 600
AUDIT_REQUEST_TIMEOUT_SECONDS = 15
REASON_MAX_CHARS = 300
URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")

log = logging.getLogger(__name__)


class ScanError(OutpostError):
    """A scanner could not run or gave no usable answer; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    dist_info: str

    @property
    def pin(self):
        return f"{self.name}=={self.version}"


@dataclasses.dataclass(frozen=True)
class ScanOutcome:
    scan: dict
    high_issues: list


def scan_release(manifest_path, allow_high=False):
    """Scan the release ``manifest_path`` describes and record the results in its manifest."""
    release = load_release(manifest_path)
    check_artifact(release)
    require_tools()

    with zipfile.ZipFile(release.pyz) as archive:
        distributions = distributions_in(archive)
        app = find_app(distributions, release.manifest.get("name"))
        with tempfile.TemporaryDirectory(prefix="outpost-scan-") as work:
            work = Path(work)
            bandit, high_issues = run_bandit(archive, app, work)
            sbom = write_sbom(distributions, release, work)
            # The app itself is private: its name has no business going to a public service.
            dependencies = [dist for dist in distributions if dist is not app]
            audit = run_pip_audit(dependencies, work)

    scan = {
        "scanned_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bandit": dict(bandit, allow_high=allow_high),
        "sbom": sbom,
        "pip_audit": audit,
    }
    write_manifest(release, dict(release.manifest, scan=scan))
    # A signature made before this scan covers a manifest that no longer exists.
    if release.signature_path.exists():
        log.info("removing %s: the manifest changed", release.signature_path.name)
        release.signature_path.unlink()
    log.info("scanned %s: %s", release.pyz.name, scan["bandit"]["severity"])
    return ScanOutcome(scan, high_issues)


def require_tools():
    missing = [dist for module, dist in TOOLS.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ScanError(
            f"not installed here: {', '.join(missing)}; install outpost with its release extra"
        )


def tool_name(module):
    dist = TOOLS[module]
    return f"{dist} {importlib.metadata.version(dist)}"


def run_tool(module, arguments, failure, cwd=None):
    command = [sys.executable, "-m", module, *arguments]
    log.debug("running %s", command)
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=TOOL_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise ScanError(f"{failure}: no answer in {TOOL_TIMEOUT_SECONDS} s") from None


def last_words(result):
    """The tool's closing line, as the reason it gives; URL credentials blanked."""
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    text = lines[-1].strip() if lines else f"exit status {result.returncode}"
    return URL_CREDENTIALS.sub("://***@", text)[:REASON_MAX_CHARS]


# -- what the zipapp holds --------------------------------------------------------------------


def distributions_in(archive):
    found = []
    for member in archive.namelist():
        parts = member.split("/")
        if len(parts) == 3 and member.startswith(SITE) and member.endswith(".dist-info/METADATA"):
            metadata = email.parser.BytesHeaderParser().parsebytes(archive.read(member))
            found.append(Distribution(metadata["Name"], metadata["Version"], parts[1]))
    return sorted(found, key=lambda dist: canonicalize_name(dist.name))


def find_app(distributions, name):
    for dist in distributions:
        if canonicalize_name(dist.name) == name:
            return dist
    raise ScanError(f"the zipapp holds no distribution {name!r}, the manifest's name")


def own_top_levels(archive, app):
    """The app's own modules and packages, from its RECORD: what bandit reads."""
    record = archive.read(f"{SITE}{app.dist_info}/RECORD").decode("utf-8")
    found = set()
    for row in csv.reader(record.splitlines()):
        if not row:
            continue
        top, _, rest = row[0].partition("/")
        if top.endswith((".dist-info", ".data")) or top in ("", "..", "__pycache__"):
            continue
        if rest or top.endswith(".py"):
            found.add(top)
    if not found:
        raise ScanError(f"{app.name} has no modules of its own in the zipapp to scan")
    return sorted(found)


def extract_own_code(archive, top_levels, destination):
    for member in archive.namelist():
        relative = member[len(SITE) :] if member.startswith(SITE) else None
        if relative and not member.endswith("/") and relative.split("/")[0] in top_levels:
            archive.extract(member, destination)
    return destination / SITE


# -- bandit -----------------------------------------------------------------------------------


def run_bandit(archive, app, work):
    """Counts of bandit's findings in the app's own code, and the HIGH ones spelled out."""
    top_levels = own_top_levels(archive, app)
    code = extract_own_code(archive, top_levels, work / "code")
    report = work / "bandit.json"

    arguments = ["-r", *top_levels, "--format", "json", "--output", str(report), "--quiet"]
    result = run_tool("bandit", arguments, "bandit", cwd=code)
    # bandit exits 1 when it found something; anything else, or no report, is its own failure.
    if result.returncode not in (0, 1) or not report.is_file():
        raise ScanError(f"bandit failed: {last_words(result)}")
    return summarize_bandit(json.loads(report.read_text(encoding="utf-8")), top_levels)


def summarize_bandit(report, top_levels):
    results = report.get("results", [])
    counts = collections.Counter(issue.get("issue_severity", "").lower() for issue in results)
    summary = {
        "tool": tool_name("bandit"),
        "targets": top_levels,
        "issues": len(results),
        "severity": {severity: counts[severity] for severity in SEVERITIES},
        # Findings the code waived with ``# nosec``, and files bandit could not parse.
        "nosec": report.get("metrics", {}).get("_totals", {}).get("nosec", 0),
        "errors": len(report.get("errors", [])),
    }
    high = [
        f"{issue['test_id']} {issue['filename']}:{issue['line_number']}: {issue['issue_text']}"
        for issue in results
        if issue.get("issue_severity") == "HIGH"
    ]
    return summary, high


# -- SBOM -------------------------------------------------------------------------------------


def write_requirements(distributions, path):
    path.write_text("".join(f"{dist.pin}\n" for dist in distributions), encoding="utf-8")
    return path


def write_sbom(distributions, release, work):
    requirements = write_requirements(distributions, work / "requirements.txt")
    target = release.folder / f"{Path(release.manifest['file']).stem}.cdx.json"
    partial = target.with_name(f".{target.name}.partial")

    arguments = ["requirements", str(requirements), "--sv", SBOM_SPEC_VERSION, "--of", "JSON"]
    # Reproducible: no random serial number, and a timestamp only from SOURCE_DATE_EPOCH.
    arguments += ["--output-reproducible", "--output-file", str(partial)]
    result = run_tool("cyclonedx_py", arguments, "cyclonedx-py")
    if result.returncode != 0 or not partial.is_file():
        raise ScanError(f"cyclonedx-py could not write the SBOM: {last_words(result)}")
    os.replace(partial, target)

    components = json.loads(target.read_text(encoding="utf-8")).get("components", [])
    return {
        "tool": tool_name("cyclonedx_py"),
        "file": target.name,
        "sha256": sha256_of(target),
        "format": f"CycloneDX {SBOM_SPEC_VERSION} JSON",
        "components": len(components),
    }


# -- pip-audit --------------------------------------------------------------------------------


def run_pip_audit(dependencies, work):
    """Known vulnerabilities of the pinned dependencies, or ``unavailable`` and why."""
    if not dependencies:
        return audit_result("passed", audited=0, findings=[])
    requirements = write_requirements(dependencies, work / "dependencies.txt")
    report = work / "pip-audit.json"

    # Every version is pinned, so neither pip nor dependency resolution is needed.
    arguments = ["--requirement", str(requirements), "--no-deps", "--disable-pip"]
    arguments += ["--format", "json", "--output", str(report), "--progress-spinner", "off"]
    arguments += ["--timeout", str(AUDIT_REQUEST_TIMEOUT_SECONDS)]
    try:
        result = run_tool("pip_audit", arguments, "pip-audit")
    except ScanError as err:
        return unavailable(str(err))
    # pip-audit exits 1 both for findings and for failures; only a report tells them apart.
    if not report.is_file():
        return unavailable(last_words(result))
    try:
        return summarize_audit(json.loads(report.read_text(encoding="utf-8")))
    except ValueError:
        return unavailable("pip-audit wrote a report that is not JSON")


def summarize_audit(report):
    dependencies = report.get("dependencies", [])
    skipped = [dep for dep in dependencies if "skip_reason" in dep]
    audited = [dep for dep in dependencies if "skip_reason" not in dep]
    if skipped and not audited:
        # As when the service is reachable but knows none of them, or answers nothing useful.
        return unavailable(f"no package could be audited: {skipped[0]['skip_reason']}")

    findings = [
        {
            "name": dep["name"],
            "version": dep.get("version"),
            "id": vuln.get("id"),
            "aliases": vuln.get("aliases", []),
            "fix_versions": vuln.get("fix_versions", []),
        }
        for dep in audited
        for vuln in dep.get("vulns", [])
    ]
    status = "vulnerable" if findings else "incomplete" if skipped else "passed"
    result = audit_result(status, audited=len(audited), findings=findings)
    if skipped:
        result["skipped"] = sorted(dep["name"] for dep in skipped)
    return result


def unavailable(reason):
    log.info("pip-audit could not check the dependencies: %s", reason)
    return audit_result("unavailable", reason=reason[:REASON_MAX_CHARS])


def audit_result(status, **details):
    return {"tool": tool_name("pip_audit"), "status": status, **details}
