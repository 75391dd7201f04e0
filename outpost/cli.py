"""
The ``outpost`` command: what runs on the master and in CI.

Commands are grouped by what they act on (``outpost release build``); each leaf parser sets
``handler``, a function of the parsed arguments that returns the exit status.

A release goes build, scan, sign, publish, notify; every step after build takes the manifest's
path. Secrets (the webhook secret, an upload token) come from environment variables named on the
command line, never from arguments, and are never printed.
"""

import argparse
import importlib.metadata
import json
import logging
import os
import sys

from outpost.audit import DEFAULT_TRAIL, FORMATS, report_trail, verify_trail
from outpost.build import build_release
from outpost.errors import BadArgument, OutpostError
from outpost.manifest import load_release
from outpost.notify import announce, delivered
from outpost.publish import DEFAULT_URL_PREFIX, publish_over_https, publish_to_folder
from outpost.scan import scan_release
from outpost.signing import (
    generate_keys,
    load_private_key,
    load_public_key,
    public_key_text,
    sign_manifest,
)
from outpost.web import is_success

DEFAULT_SECRET_ENV = "OUTPOST_WEBHOOK_SECRET"  # noqa: S105 (a variable's name, not a secret)
ANSWER_MAX_CHARS = 2000

log = logging.getLogger("outpost")


def installed_version():
    try:
        return importlib.metadata.version("outpost")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="outpost", description="Build Python web apps into Shiv zipapps and release them."
    )
    parser.add_argument("--version", action="version", version=f"outpost {installed_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser("release", help="build and handle app releases")
    actions = release.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_release_build(actions)
    add_release_scan(actions)
    add_release_keygen(actions)
    add_release_public_key(actions)
    add_release_sign(actions)
    add_release_publish(actions)
    add_release_notify(actions)

    audit = commands.add_parser("audit", help="check and report on the master's audit trail")
    audit_actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_audit_verify(audit_actions)
    add_audit_report(audit_actions)
    return parser


def _trail_arguments(parser):
    parser.add_argument(
        "--trail",
        default=DEFAULT_TRAIL,
        metavar="FILE",
        help=f"the audit trail (default: {DEFAULT_TRAIL})",
    )


def add_audit_verify(actions):
    verify = actions.add_parser(
        "verify",
        help="check every record's hash and link; exit 1 naming what was changed",
        description=(
            "Recompute the hash chain of the audit trail. Names every record that was changed, "
            "removed, inserted or reordered, and exits 1 if there is any. Prints the head "
            "(<seq>:<hash>): note it, and a later --expect-head shows whether the end was cut."
        ),
    )
    _trail_arguments(verify)
    verify.add_argument("--expect-head", metavar="SEQ:HASH", help="a head noted earlier")
    verify.set_defaults(handler=run_audit_verify, parser=verify)


def run_audit_verify(args):
    verdict = verify_trail(args.trail, expect_head=args.expect_head)
    for problem in verdict["problems"]:
        print(f"TAMPERED: {problem}")
    state = "ok" if verdict["ok"] else f"{len(verdict['problems'])} problem(s)"
    print(f"{args.trail}: {verdict['count']} records, {state}; head {verdict['head']}")
    return 0 if verdict["ok"] else 1


def add_audit_report(actions):
    report = actions.add_parser(
        "report",
        help="release timeline per client, rollbacks and refused requests",
        description=(
            "Report on the audit trail: each client's release timeline, rollbacks with their "
            "reasons, rollout phases and refused requests; CSV has one row per record. The chain "
            "is verified first: if it fails, the problems are printed and the exit status is 1 "
            "(with --allow-unverified the report is still written, under a TAMPERED banner)."
        ),
    )
    _trail_arguments(report)
    report.add_argument("--since", metavar="TIME", help="ISO 8601, UTC unless a zone is given")
    report.add_argument("--until", metavar="TIME", help="ISO 8601, exclusive")
    report.add_argument("--client", metavar="MINION", help="only this client")
    report.add_argument("--app", metavar="APP", help="only this app")
    report.add_argument("--format", choices=FORMATS, default="text")
    report.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    report.add_argument(
        "--allow-unverified",
        action="store_true",
        help="report even when the chain does not verify (the report says TAMPERED)",
    )
    report.set_defaults(handler=run_audit_report, parser=report)


def run_audit_report(args):
    verdict, text = report_trail(
        args.trail,
        fmt=args.format,
        since=args.since,
        until=args.until,
        client=args.client,
        app=args.app,
    )
    if not verdict["ok"]:
        for problem in verdict["problems"]:
            print(f"TAMPERED: {problem}", file=sys.stderr)
        if not args.allow_unverified:
            print(
                f"{args.trail}: the chain does not verify; no report (--allow-unverified to "
                "write it anyway, marked TAMPERED)",
                file=sys.stderr,
            )
            return 1
    if args.out:
        write_report(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def write_report(path, text):
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as err:
        raise OutpostError(f"--out: cannot write {path} ({err.strerror or err})") from None


def add_release_build(actions):
    build = actions.add_parser(
        "build",
        help="build an app into <name>-<version>.pyz and its manifest",
        description=(
            "Build SOURCE_DIR, or a released distribution given with --requirement, into a "
            "reproducible Shiv zipapp OUT_DIR/<name>-<version>.pyz and write "
            "OUT_DIR/<name>-<version>.manifest.json beside it. The manifest is also printed."
        ),
    )
    build.add_argument(
        "source_dir", nargs="?", metavar="SOURCE_DIR", help="a Python project to build"
    )
    build.add_argument("--out", required=True, metavar="OUT_DIR", help="folder for the results")
    build.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="SPEC",
        help=(
            "also install SPEC (repeatable); without SOURCE_DIR the first one is the app, "
            "e.g. datasette==0.65.5"
        ),
    )
    build.add_argument(
        "--python-requirement",
        metavar="SPEC",
        help=(
            "interpreters the zipapp runs on, e.g. '>=3.10' (default: the app's Requires-Python, "
            "narrowed to this interpreter's minor version if it ships compiled modules)"
        ),
    )
    entry = build.add_mutually_exclusive_group()
    entry.add_argument("--entry-point", metavar="MODULE:FUNC", help="the function to run")
    entry.add_argument(
        "--console-script",
        metavar="NAME",
        help="the console script to run (default: the app's only one)",
    )
    build.add_argument(
        "--app",
        metavar="NAME",
        help="the app's name in outpost, as the master and clients know it (default: the "
        "distribution's name)",
    )
    build.set_defaults(handler=run_release_build, parser=build)


def run_release_build(args):
    manifest = build_release(
        args.source_dir,
        out_dir=args.out,
        requirements=args.requirement,
        python_requirement=args.python_requirement,
        entry_point=args.entry_point,
        console_script=args.console_script,
        app_name=args.app,
    )
    print(json.dumps(manifest, indent=2))
    return 0


def add_manifest_argument(parser):
    parser.add_argument(
        "manifest", metavar="MANIFEST", help="the manifest written by outpost release build"
    )


def add_release_scan(actions):
    scan = actions.add_parser(
        "scan",
        help="scan a built release: bandit, an SBOM and pip-audit",
        description=(
            "Run bandit over the app's own code in the zipapp, write a CycloneDX SBOM of every "
            "distribution in it beside MANIFEST, and check the dependencies with pip-audit. "
            "The results are added to MANIFEST under 'scan' and printed. Exits 1 when bandit "
            "finds a HIGH severity issue; pip-audit's service being unreachable is recorded, "
            "not fatal."
        ),
    )
    add_manifest_argument(scan)
    scan.add_argument(
        "--allow-high",
        action="store_true",
        help="exit 0 even when bandit finds HIGH severity issues (recorded in the manifest)",
    )
    scan.set_defaults(handler=run_release_scan, parser=scan)


def run_release_scan(args):
    outcome = scan_release(args.manifest, allow_high=args.allow_high)
    print(json.dumps(outcome.scan, indent=2))
    audit = outcome.scan["pip_audit"]
    if audit["status"] == "unavailable":
        print(f"outpost: warning: pip-audit checked nothing: {audit['reason']}", file=sys.stderr)
    if not outcome.high_issues or args.allow_high:
        return 0

    for issue in outcome.high_issues:
        print(f"outpost: HIGH: {issue}", file=sys.stderr)
    print(
        f"outpost: error: bandit found {len(outcome.high_issues)} HIGH severity issue(s); "
        "fix them, or pass --allow-high to release anyway",
        file=sys.stderr,
    )
    return 1


def add_release_keygen(actions):
    keygen = actions.add_parser(
        "keygen",
        help="make an Ed25519 key pair for signing releases",
        description=(
            "Write a new Ed25519 private key (PKCS8 PEM, mode 0600) for CI to sign manifests "
            "with, and its public key as base64 of the raw 32 bytes, as the master's "
            "configuration lists trusted keys. The public key is also printed. Existing files "
            "are never replaced."
        ),
    )
    keygen.add_argument("--private", required=True, metavar="PATH", help="the private key file")
    keygen.add_argument("--public", required=True, metavar="PATH", help="the public key file")
    keygen.set_defaults(handler=run_release_keygen, parser=keygen)


def run_release_keygen(args):
    print(generate_keys(args.private, args.public))
    return 0


def add_release_public_key(actions):
    public_key = actions.add_parser(
        "public-key",
        help="print the public key of a signing key, as the master lists it",
        description=(
            "Print the Ed25519 public key of the private key --key as base64 of its 32 raw "
            "bytes: the line for the master's outpost:releases:signing_keys, and what "
            "outpost release publish --public reads."
        ),
    )
    public_key.add_argument("--key", required=True, metavar="PATH", help="the private key (PEM)")
    public_key.set_defaults(handler=run_release_public_key, parser=public_key)


def run_release_public_key(args):
    print(public_key_text(load_private_key(args.key)))
    return 0


def add_release_sign(actions):
    sign = actions.add_parser(
        "sign",
        help="sign a release's manifest with Ed25519",
        description=(
            "Check that the zipapp beside MANIFEST is the one it describes, then write "
            "MANIFEST.sig: the base64 Ed25519 signature over the canonical manifest. Sign after "
            "scan: scanning changes the manifest and removes an earlier signature."
        ),
    )
    add_manifest_argument(sign)
    sign.add_argument("--key", required=True, metavar="PATH", help="the private key (PEM)")
    sign.set_defaults(handler=run_release_sign, parser=sign)


def run_release_sign(args):
    print(sign_manifest(load_release(args.manifest), args.key))
    return 0


def add_release_publish(actions):
    publish = actions.add_parser(
        "publish",
        help="copy or upload a signed release to where clients fetch it",
        description=(
            "Check that MANIFEST.sig verifies against MANIFEST under the --public key, then "
            "publish the zipapp, MANIFEST, MANIFEST.sig and the SBOM under <app>/, into a folder "
            "the master serves (--root) or to an HTTPS artifact store (--url), and print the "
            "zipapp's URL for outpost release notify. A published file never changes: the same "
            "bytes again are accepted, other bytes refused."
        ),
    )
    add_manifest_argument(publish)
    publish.add_argument(
        "--public",
        required=True,
        metavar="FILE",
        help=(
            "the public key the signature must verify against, as keygen wrote it: the one the "
            "master trusts"
        ),
    )
    where = publish.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", metavar="DIR", help="the folder served as the URL prefix")
    where.add_argument(
        "--url", metavar="URL", help="an https:// store to PUT each file to, under <URL><app>/"
    )
    publish.add_argument(
        "--url-prefix",
        metavar="PREFIX",
        help=f"with --root: what the master calls DIR (default: {DEFAULT_URL_PREFIX})",
    )
    publish.add_argument(
        "--token-env",
        metavar="NAME",
        help="with --url: the environment variable holding a bearer token for the store",
    )
    publish.add_argument(
        "--cacert", metavar="FILE", help="with --url: trust only this CA certificate (PEM)"
    )
    publish.set_defaults(handler=run_release_publish, parser=publish)


def run_release_publish(args):
    if args.root and (args.token_env or args.cacert):
        raise BadArgument("--token-env and --cacert go with --url, not --root")
    if args.url and args.url_prefix is not None:
        raise BadArgument("--url-prefix goes with --root; with --url the URL is the prefix")

    public_key = load_public_key(args.public)
    release = load_release(args.manifest)
    if args.root:
        prefix = DEFAULT_URL_PREFIX if args.url_prefix is None else args.url_prefix
        url = publish_to_folder(release, args.root, public_key, prefix)
    else:
        token = secret_from_env(args.token_env, "--token-env") if args.token_env else None
        url = publish_over_https(release, args.url, public_key, token=token, cacert=args.cacert)
    print(url)
    return 0


def secret_from_env(name, option):
    value = os.environ.get(name)
    if not value:
        raise BadArgument(f"{option}: the environment variable {name} is not set")
    return value


def add_release_notify(actions):
    notify = actions.add_parser(
        "notify",
        help="announce a published release to the master's webhook",
        description=(
            "POST MANIFEST, its signature and ARTIFACT_URL to the master's salt-api webhook, "
            "signed with HMAC-SHA256 under the shared secret read from the environment. Prints "
            'the answer; exits 0 only when salt-api answers {"success": true}, 1 otherwise.'
        ),
    )
    add_manifest_argument(notify)
    notify.add_argument(
        "--hook",
        required=True,
        metavar="URL",
        help=(
            "the webhook, e.g. https://salt.example.com:8000/hook/outpost/release; plain "
            "http:// only to this machine"
        ),
    )
    notify.add_argument(
        "--artifact-url",
        required=True,
        metavar="URL",
        help="where clients fetch the zipapp, as outpost release publish printed it",
    )
    notify.add_argument(
        "--secret-env",
        default=DEFAULT_SECRET_ENV,
        metavar="NAME",
        help=f"the environment variable holding the webhook secret (default: {DEFAULT_SECRET_ENV})",
    )
    notify.add_argument("--cacert", metavar="FILE", help="trust only this CA certificate (PEM)")
    notify.set_defaults(handler=run_release_notify, parser=notify)


def run_release_notify(args):
    secret = secret_from_env(args.secret_env, "--secret-env")
    release = load_release(args.manifest)
    status, reason, answer = announce(
        release, args.hook, args.artifact_url, secret, cacert=args.cacert
    )

    print(f"HTTP {status} {reason}")
    text = answer.decode("utf-8", errors="replace").strip()
    if text:
        print(text[:ANSWER_MAX_CHARS])
    if is_success(status) and not delivered(status, answer):
        print(
            'outpost: the answer is not salt-api\'s {"success": true}, so the announcement may '
            "not be on the master's event bus: post it again, or check --hook",
            file=sys.stderr,
        )
    return 0 if delivered(status, answer) else 1


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="outpost: %(levelname)s: %(message)s",
    )

    try:
        return args.handler(args)
    except BadArgument as err:
        # Reads like argparse's own complaints: usage, then the message, exit status 2.
        args.parser.error(str(err))
    except OutpostError as err:
        print(f"outpost: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("outpost: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left early (``| head``); point stdout at nothing so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as err:
        # A file the command reads or writes: the message names it and says why.
        print(f"outpost: error: {err}", file=sys.stderr)
        return 1
