"""`zoostore cache info|prune`: the local cache of verified files (see zoostore.storage.cache)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zoostore.cli._ui import human_bytes


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cache", help="show or prune the local cache",
        description="The local cache holds verified files shared by every project of this user: "
        "$ZOOSTORE_CACHE, else $XDG_CACHE_HOME/zoostore, else ~/.cache/zoostore.",
    )
    p.set_defaults(func=lambda args: _usage(p))
    commands = p.add_subparsers(dest="cache_command", metavar="COMMAND")
    info = commands.add_parser("info", help="where the cache is, how many files and bytes it holds")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=run_info)
    prune = commands.add_parser(
        "prune", help="delete cached files that no given lockfile pins",
        description="Delete every cached file that none of the given zoo.lock files pins; "
        "without --keep-lock, empty the cache. Files that sync hard-linked into projects keep "
        "their data there.",
    )
    prune.add_argument("--keep-lock", action="append", default=[], metavar="FILE",
                       help="keep the files this zoo.lock pins (local path or fsspec URL; repeatable)")
    prune.add_argument("--json", action="store_true", help="machine-readable output")
    prune.set_defaults(func=run_prune)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_info(args: argparse.Namespace) -> int:
    from zoostore.storage.cache import Cache

    info = Cache().info()
    if args.json:
        print(json.dumps({"path": str(info.root), "blobs": info.blobs, "bytes": info.bytes}, indent=2))
    else:
        print(f"path:  {info.root}")
        print(f"blobs: {info.blobs}")
        print(f"size:  {human_bytes(info.bytes)} ({info.bytes} bytes)")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    import os

    from zoostore.storage.cache import Cache
    from zoostore.core.digest import Digest
    from zoostore.ops.gc import pinned_blobs, read_lock

    keep: set[Digest] = set()
    for location in args.keep_lock:
        keep |= pinned_blobs(read_lock(location), where=os.fspath(location))
    cache = Cache()
    removed, freed = cache.prune(keep)
    if args.json:
        print(json.dumps({"path": str(cache.root), "removed": removed, "bytes": freed,
                          "kept_pins": len(keep)}, indent=2))
    else:
        print(f"removed {removed} file(s), {human_bytes(freed)}, from {cache.root}"
              + (f"; kept what {len(args.keep_lock)} lockfile(s) pin" if args.keep_lock else ""))
    return 0
