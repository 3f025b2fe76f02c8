"""`zoostore yank STORE MODEL VERSION --reason TEXT [--undo]`."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "yank", help="mark a version as withdrawn (ranges skip it), or undo that",
        description="A yanked version stays downloadable for lockfiles that pin it (with a "
        "warning) but is never chosen for a range or 'latest'. Nothing is deleted.",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--reason", help="why (required unless --undo)")
    p.add_argument("--undo", action="store_true", help="un-yank the version")
    add_json(p, "the version's yank state after the change")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.core.errors import UsageError
    from zoostore.ops.tags import unyank, yank
    from zoostore.repository import open_store

    if not args.undo and not (args.reason or "").strip():
        raise UsageError("--reason TEXT is required (it is shown to everyone who pinned this version)")
    zoo = open_store(args.store)
    progress = TerminalProgress.for_args(args)
    if args.undo:
        m = unyank(zoo, args.model, args.version, progress=progress)
    else:
        m = yank(zoo, args.model, args.version, args.reason, progress=progress)
    version = m.same_version(args.version) or args.version
    reason = m.versions[version].yanked if version in m.versions else ""
    if args.json:
        print_json({"model": args.model, "version": version, "yanked": reason or None, "latest": m.latest()})
    elif args.undo:
        print(f"{args.model}@{version}: un-yanked")
    else:
        print(f"{args.model}@{version}: yanked: {reason}")
    return 0
