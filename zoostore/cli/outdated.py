"""`zoostore outdated`: locked version, newest matching, newest overall, per model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "outdated", help="show models whose lock is behind the newest versions",
        description="For each model in zoo.toml: the locked version, the newest version its range "
        "allows (run 'zoostore lock --upgrade' to move there) and the newest version overall "
        "(needs a change of range in zoo.toml). '*' marks a model with a newer version; 'stale' "
        "one whose range in zoo.toml changed since the lock (run 'zoostore lock').",
        epilog="example: zoostore outdated --project examples/app",
    )
    p.add_argument("--project", metavar="PATH", help="zoo.toml, pyproject.toml or a directory (default: search up from here)")
    add_json(p, "the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.project import load_project
    from zoostore.ops.lock import outdated

    rows = outdated(load_project(args.project))
    if args.json:
        print_json({"models": [r.__dict__ for r in rows]})
        return 0
    print(f"{'model':28} {'spec':14} {'locked':12} {'matching':12} {'newest':12} note")
    for r in rows:
        notes = [] if r.locked == r.matching == r.newest else ["*"]
        if r.stale:
            notes.append("stale: zoo.toml changed since the lock, run 'zoostore lock'")
        elif r.unlisted:
            notes.append("the store does not list the locked version: run 'zoostore lock'")
        print(f"{r.model:28} {r.spec:14} {r.locked or '-':12} {r.matching or '-':12} {r.newest or '-':12} "
              f"{' '.join(notes)}".rstrip())
    if any(r.locked != r.matching for r in rows if not (r.stale or r.unlisted)):
        print("'zoostore lock --upgrade' moves locked versions to the matching ones", file=sys.stderr)
    return 0
