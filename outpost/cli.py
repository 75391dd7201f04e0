"""
The ``outpost`` command: what runs on the master and in CI.

Commands are grouped by what they act on (``outpost release build``); each leaf parser sets
``handler``, a function of the parsed arguments that returns the exit status.
"""

import argparse
import importlib.metadata
import json
import logging
import os
import sys

from outpost.build import BadArgument, BuildError, build_release

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
    return parser


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
    build.set_defaults(handler=run_release_build, parser=build)


def run_release_build(args):
    manifest = build_release(
        args.source_dir,
        out_dir=args.out,
        requirements=args.requirement,
        python_requirement=args.python_requirement,
        entry_point=args.entry_point,
        console_script=args.console_script,
    )
    print(json.dumps(manifest, indent=2))
    return 0


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
    except BuildError as err:
        print(f"outpost: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("outpost: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left early (``| head``); point stdout at nothing so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
