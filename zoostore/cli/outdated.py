"""`zoostore outdated`: locked version, newest matching, newest overall, per model."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "outdated", help="show models whose lock is behind the newest versions",
        description="For each model in zoo.toml: the locked version, the newest version its range "
        "allows (run 'zoostore lock --upgrade' to move there) and the newest version overall "
        "(needs a change of range in zoo.toml).",
    )
    p.add_argument("--project", metavar="PATH")
    add_json(p, "the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.project import load_project
    from zoostore.ops.lock import outdated

    rows = outdated(load_project(args.project))
    if args.json:
        print_json({"models": [r.__dict__ for r in rows]})
        return 0
    print(f"{'model':28} {'spec':14} {'locked':12} {'matching':12} {'newest':12}")
    for r in rows:
        mark = "" if r.locked == r.matching == r.newest else "  *"
        print(f"{r.model:28} {r.spec:14} {r.locked or '-':12} {r.matching or '-':12} {r.newest or '-':12}{mark}")
    return 0
