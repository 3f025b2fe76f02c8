"""`zoostore yank STORE MODEL VERSION --reason TEXT [--undo]`."""

from __future__ import annotations

import argparse
from typing import Any


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.cli._ui import TerminalProgress
    from zoostore.core.errors import UsageError
    from zoostore.ops.tags import unyank, yank
    from zoostore.repository import open_store

    if not args.undo and not (args.reason or "").strip():
        raise UsageError("--reason TEXT is required (it is shown to everyone who pinned this version)")
    zoo = open_store(args.store)
    progress = TerminalProgress.for_args(args)
    if args.undo:
        unyank(zoo, args.model, args.version, progress=progress)
        print(f"{args.model}@{args.version}: un-yanked")
    else:
        yank(zoo, args.model, args.version, args.reason, progress=progress)
        print(f"{args.model}@{args.version}: yanked: {args.reason.strip()}")
    return 0
