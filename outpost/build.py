"""
Build a Python app into a reproducible Shiv zipapp and a manifest that describes it.

The same input gives the same bytes: pip installs into a fresh folder with no cache, everything
that names the build machine or the temporary folders is stripped, and shiv packs the result with
fixed timestamps. Shiv's build id is a hash of the packed files, so it is reproducible too.
"""

import csv
import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from shiv.constants import SOURCE_DATE_EPOCH_DEFAULT

from outpost.errors import BadArgument, OutpostError
from outpost.rules import app_name_problem, version_problem

# outpost never runs a zipapp through its shebang: the client starts it with a pinned interpreter.
SHEBANG = "/usr/bin/env python3"
# What outpost itself supports, for apps that declare nothing narrower.
DEFAULT_PYTHON_REQUIREMENT = ">=3.10"
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
NATIVE_SUFFIXES = (".so", ".pyd")
OUTPUT_TAIL_LINES = 20

# Left at the root of a source tree, these would leak into the build: setuptools reuses build/
# as it finds it, so a file deleted from the source would still ship. The rest only cost time.
ROOT_LEFTOVERS = {"build", "dist", ".venv", "venv", ".tox", ".nox"}
ANY_LEVEL_LEFTOVERS = shutil.ignore_patterns(
    "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache"
)

log = logging.getLogger(__name__)


class BuildError(OutpostError):
    """The release could not be built; the message says what went wrong."""


def build_release(
    source_dir=None,
    *,
    out_dir,
    requirements=(),
    python_requirement=None,
    entry_point=None,
    console_script=None,
    app_name=None,
):
    """
    Build ``source_dir`` (or the first of ``requirements``) into ``<name>-<version>.pyz``.

    Writes the zipapp and ``<name>-<version>.manifest.json`` into ``out_dir`` and returns the
    manifest, plus ``path`` and ``manifest_path``, the absolute paths of the two files. The
    manifest's ``app`` is ``app_name``, or else the distribution's name.
    """
    source, out, requirements = check_arguments(
        source_dir, out_dir, requirements, python_requirement, entry_point, console_script
    )
    if app_name is not None:
        check_app_name(app_name, "--app")

    with tempfile.TemporaryDirectory(prefix="outpost-build-") as work:
        work = Path(work)
        site = work / "site-packages"
        staged = stage_source(source, work / "source") if source else None
        install(site, staged, requirements, source)

        app = find_app(site, staged, requirements)
        entry = resolve_entry_point(app, site, entry_point, console_script)
        strip_build_traces(site)
        requires_python = choose_python_requirement(python_requirement, app, site)

        name, version = canonicalize_name(app.metadata["Name"]), check_version(app.version)
        if app_name is None:
            app_name = check_app_name(name, "the distribution name (give --app NAME)")
        packed = work / f"{name}-{version}.pyz"
        pack(site, entry, packed)
        pyz = publish(packed, out)

    manifest = {
        "app": app_name,
        "name": name,
        "version": version,
        "file": pyz.name,
        "sha256": sha256_of(pyz),
        "size": pyz.stat().st_size,
        "entry_point": entry,
        "python_requires": requires_python,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shiv_build_id": shiv_build_id(pyz),
    }
    manifest_path = out / f"{name}-{version}.manifest.json"
    write_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")
    log.info("built %s (sha256 %s)", pyz, manifest["sha256"])
    return dict(manifest, path=str(pyz), manifest_path=str(manifest_path))


# -- arguments --------------------------------------------------------------------------------


def check_arguments(source_dir, out_dir, requirements, python_requirement, entry, script):
    """Fail before any work on an argument that cannot succeed; return the resolved paths."""
    if source_dir is None and not requirements:
        raise BadArgument("give a SOURCE_DIR to build, or at least one --requirement")
    if entry and script:
        raise BadArgument("--entry-point and --console-script exclude each other: give one")
    if entry and not ENTRY_POINT.match(entry):
        raise BadArgument(f"--entry-point: {entry!r} is not of the form module:function")
    if python_requirement is not None:
        check_python_requirement(python_requirement)
    for spec in requirements:
        check_requirement(spec)

    source = check_source_dir(source_dir) if source_dir is not None else None
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise BadArgument(f"--out: {out_dir} exists and is not a folder")
    return source, out, list(requirements)


def check_app_name(name, where):
    # The clients' own rule (outpost.rules), so nothing is built that a client would refuse.
    problem = app_name_problem(name)
    if problem:
        raise BadArgument(f"{where}: {name!r} {problem}")
    return name


def check_version(version):
    """The version pip installed, under the rule every later step and the clients apply."""
    problem = version_problem(version)
    if problem:
        # pip normalises versions the PEP 440 way: 1.2.3-rc.1 arrives here as 1.2.3rc1.
        raise BuildError(
            f"version: {version!r} (the project's version as pip reads it) {problem}; pip spells "
            "pre-releases the PEP 440 way (1.2.3-rc.1 becomes 1.2.3rc1), which outpost does not "
            "take: give the project a plain version such as 1.2.3"
        )
    return version


def check_source_dir(source_dir):
    source = Path(source_dir).absolute()
    if not source.is_dir():
        raise BadArgument(f"SOURCE_DIR: {source_dir} is not a folder")
    if not any((source / marker).is_file() for marker in ("pyproject.toml", "setup.py")):
        raise BadArgument(f"SOURCE_DIR: {source_dir} has no pyproject.toml or setup.py")
    return source


def check_requirement(spec):
    try:
        Requirement(spec)
    except InvalidRequirement:
        raise BadArgument(
            f"--requirement: {spec!r} is not a requirement such as 'datasette==0.65.5'"
        ) from None


def check_python_requirement(spec):
    try:
        specifier = SpecifierSet(spec)
    except InvalidSpecifier:
        raise BadArgument(
            f"--python-requirement: {spec!r} is not a version specifier such as '>=3.10'"
        ) from None

    # pip picks each dependency for the interpreter that builds, so that one must qualify.
    running = platform.python_version()
    if not specifier.contains(running, prereleases=True):
        raise BadArgument(
            f"--python-requirement: {spec!r} excludes Python {running}, which runs this build; "
            "build with an interpreter it admits"
        )


# -- building ---------------------------------------------------------------------------------


def stage_source(source, destination):
    """Copy the source tree without earlier build output, so only what is there now ships."""

    def leftovers(folder, names):
        ignored = set(ANY_LEVEL_LEFTOVERS(folder, names))
        if Path(folder) == source:
            ignored |= ROOT_LEFTOVERS.intersection(names)
        return ignored

    shutil.copytree(source, destination, ignore=leftovers)
    return destination


def install(site, staged, requirements, source):
    """pip install into an empty site-packages: no cache, no bytecode, nothing from this venv."""
    command = [sys.executable, "-m", "pip", "install", "--target", str(site)]
    command += ["--no-cache-dir", "--no-compile", "--no-input", "--disable-pip-version-check"]
    command += ["--progress-bar", "off", "--no-warn-script-location"]
    command += ([str(staged)] if staged else []) + requirements

    # Name the caller's folder, not the temporary copy pip is given.
    wanted = " ".join(([str(source)] if source else []) + requirements)
    log.info("installing %s into a fresh site-packages", wanted)
    run(command, f"pip could not install {wanted}")


def pack(site, entry_point, target):
    command = [sys.executable, "-m", "shiv", "--site-packages", str(site)]
    command += ["--entry-point", entry_point, "--python", SHEBANG, "--reproducible"]
    command += ["--output-file", str(target)]
    log.info("packing %s with shiv", target.name)
    run(command, "shiv could not pack the app")


def run(command, failure):
    env = dict(os.environ)
    # Fixed zip timestamps; a date the caller set (as reproducible-builds tools do) wins.
    env.setdefault("SOURCE_DATE_EPOCH", str(SOURCE_DATE_EPOCH_DEFAULT))
    # pip would refuse --target outside a virtualenv under this setting; shiv lifts it the same way.
    env.pop("PIP_REQUIRE_VIRTUALENV", None)

    log.debug("running %s", command)
    result = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    log.debug("%s", result.stdout)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-OUTPUT_TAIL_LINES:])
        raise BuildError(f"{failure} (exit {result.returncode}):\n{tail}")


def publish(packed, out):
    """Move the zipapp into ``out`` under its final name in one step, never half-written."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / packed.name
    partial = out / f".{packed.name}.partial"
    shutil.move(packed, partial)
    os.replace(partial, target)
    return target


# -- reading what pip installed ---------------------------------------------------------------


def distributions(site):
    return list(importlib.metadata.distributions(path=[str(site)]))


def find_app(site, staged_source, requirements):
    """The distribution being released: the source tree if there is one, else the first spec."""
    installed = distributions(site)
    if staged_source is not None:
        for dist in installed:
            if installed_from(dist) == staged_source.as_uri():
                return dist
        raise BuildError("pip installed SOURCE_DIR but its distribution cannot be found")

    wanted = canonicalize_name(Requirement(requirements[0]).name)
    for dist in installed:
        if canonicalize_name(dist.metadata["Name"]) == wanted:
            return dist
    raise BuildError(f"--requirement: pip did not install {wanted} from {requirements[0]!r}")


def installed_from(dist):
    """The URL pip recorded for a direct install (a folder or URL), else None."""
    text = dist.read_text("direct_url.json")
    return json.loads(text).get("url") if text else None


def console_scripts(dist):
    return {ep.name: ep for ep in dist.entry_points if ep.group == "console_scripts"}


def resolve_entry_point(app, site, entry_point, console_script):
    """Turn the choice of entry into ``module:function``, checking that it exists."""
    name = app.metadata["Name"]
    if entry_point:
        top_module = entry_point.split(":", 1)[0].split(".", 1)[0]
        if not (site / top_module).is_dir() and not any(site.glob(f"{top_module}.*")):
            raise BadArgument(f"--entry-point: no module {top_module!r} was installed with {name}")
        return entry_point
    if console_script:
        return as_module_function(find_console_script(console_script, app, site))

    scripts = console_scripts(app)
    if len(scripts) != 1:
        found = ", ".join(sorted(scripts)) or "none"
        raise BadArgument(
            f"{name} has {len(scripts)} console scripts ({found}): choose one with "
            "--console-script NAME or give --entry-point module:function"
        )
    return as_module_function(next(iter(scripts.values())))


def find_console_script(script, app, site):
    # The app's own scripts first; then a dependency's, as when releasing a plugin bundle.
    for dist in [app, *distributions(site)]:
        scripts = console_scripts(dist)
        if script in scripts:
            return scripts[script]

    known = ", ".join(sorted(console_scripts(app))) or "none"
    raise BadArgument(
        f"--console-script: no console script {script!r} is installed "
        f"(those of {app.metadata['Name']}: {known})"
    )


def as_module_function(entry):
    if not entry.attr:
        raise BadArgument(f"console script {entry.name!r} names no function: {entry.value!r}")
    return f"{entry.module}:{entry.attr}"


def strip_build_traces(site):
    """Remove what names this machine or this build's folders, then fix the RECORD files."""
    # Scripts in bin/ start with the path of the interpreter that ran pip; shiv needs none of them
    # because it is given the entry point itself.
    shutil.rmtree(site / "bin", ignore_errors=True)
    # direct_url.json holds the temporary folder the source was copied to.
    for path in site.glob("*.dist-info/direct_url.json"):
        path.unlink()
    for path in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(path)

    for record in site.glob("*.dist-info/RECORD"):
        prune_record(site, record)


def prune_record(site, record):
    """Keep only the lines of files that are still in site-packages."""
    root = site.resolve()
    kept = []
    for line in record.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.strip():
            continue
        # RECORD is CSV: a name with a comma in it comes quoted.
        path = (site / next(csv.reader([line]))[0]).resolve()
        if path.is_relative_to(root) and path.is_file():
            kept.append(line)
    record.write_text("".join(kept), encoding="utf-8")


def has_native_code(site):
    return any(is_native(path.name) for path in site.rglob("*"))


def is_native(file_name):
    # Versioned shared libraries, as wheels vendor them, end in .so.<version>.
    return file_name.endswith(NATIVE_SUFFIXES) or ".so." in file_name


def choose_python_requirement(requested, app, site):
    """The interpreters the zipapp runs on: as asked, else as narrow as its contents demand."""
    this_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    native = has_native_code(site)
    if requested:
        if native and admits_other_minors(requested):
            log.warning(
                "%s ships compiled modules that load on Python %s only, but "
                "--python-requirement %r admits other versions",
                app.metadata["Name"],
                this_minor,
                requested,
            )
        return requested
    if native:
        # Compiled extension modules load only on the minor version pip chose them for.
        return f"=={this_minor}.*"
    return app.metadata.get("Requires-Python") or DEFAULT_PYTHON_REQUIREMENT


def admits_other_minors(requested):
    others = [f"3.{minor}.0" for minor in range(8, 20) if minor != sys.version_info.minor]
    return any(SpecifierSet(requested).filter(others))


# -- results ----------------------------------------------------------------------------------


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shiv_build_id(pyz):
    with zipfile.ZipFile(pyz) as archive:
        return json.loads(archive.read("environment.json"))["build_id"]


def write_atomically(path, text):
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
