"""`zoostore lock [--upgrade [MODEL]]`: resolve zoo.toml into zoo.lock."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "lock", help="resolve zoo.toml's models to exact versions and files in zoo.lock",
        description="Resolve each model in zoo.toml to the highest matching, non-yanked, "
        "runtime-compatible version and write zoo.lock (commit it). Models whose requirement did "
        "not change keep their pinned version unless --upgrade.",
    )
    p.add_argument("--upgrade", nargs="?", const=True, default=False, metavar="MODEL",
                   help="move pins to the newest matching versions (all models, or only MODEL)")
    p.add_argument("--project", metavar="PATH", help="zoo.toml, pyproject.toml or a directory (default: search up from here)")
    add_json(p, "what changed")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.project import load_project
    from zoostore.ops.lock import lock_project

    project = load_project(args.project)
    upgrade = args.upgrade if args.upgrade is True or args.upgrade is False else [args.upgrade]
    result = lock_project(project, upgrade=upgrade, progress=TerminalProgress.for_args(args))
    if args.json:
        print_json({
            "lockfile": str(project.lock_path), "written": result.written,
            "changes": [{"model": n, "old": o, "new": v} for n, o, v in result.changes],
            "models": {name: m.version for name, m in sorted(result.lock.models.items())},
            "warnings": result.warnings,
        })
        return 0
    for name, old, new in result.changes:
        if old is None:
            print(f"+ {name} {new}")
        elif new is None:
            print(f"- {name} {old}")
        else:
            print(f"~ {name} {old} -> {new}")
    if not args.quiet:
        total = len(result.lock.models)
        if not result.written:
            state = f"unchanged ({total} model(s))"
        elif result.changes:
            state = f"updated ({len(result.changes)} of {total} model(s) changed)"
        else:
            state = f"updated ({total} model(s); no version changed)"
        print(f"{project.lock_path}: {state}", file=sys.stderr)
    return 0
