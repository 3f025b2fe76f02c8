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
    from zoostore.core.errors import NotFoundError, UsageError
    from zoostore.documents.manifest import Manifest
    from zoostore.repository import open_store

    if not args.undo and not (args.reason or "").strip():
        raise UsageError("--reason TEXT is required (it is shown to everyone who pinned this version)")
    zoo = open_store(args.store)

    def change(m: Manifest | None) -> Manifest:
        if m is None:
            raise NotFoundError(zoo._unknown_model(args.model))
        return m.with_yank(args.version, "" if args.undo else args.reason.strip())

    zoo.update_manifest(args.model, change)
    print(f"{args.model}@{args.version}: {'un-yanked' if args.undo else 'yanked: ' + args.reason.strip()}")
    return 0
