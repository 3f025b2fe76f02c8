"""`zoostore cache info|prune`: the local cache of verified files (see zoostore.storage.cache)."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import add_json, human_bytes, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cache", help="show or prune the local cache",
        description="The local cache holds verified files shared by every project of this user: "
        "$ZOOSTORE_CACHE, else $XDG_CACHE_HOME/zoostore, else ~/.cache/zoostore.",
    )
    p.set_defaults(func=lambda args: _usage(p))
    commands = p.add_subparsers(dest="cache_command", metavar="COMMAND")
    info = commands.add_parser("info", help="where the cache is, how many files and bytes it holds")
    add_json(info, "the cache's size")
    info.set_defaults(func=run_info)
    prune = commands.add_parser(
        "prune", help="delete cached files: --all, --older-than DURATION, or those no --keep-lock pins",
        description="Delete cached files in an explicit scope: --all empties the cache; "
        "--keep-lock FILE (repeatable) deletes what none of those zoo.lock files pins; "
        "--older-than DURATION deletes what was not used for that long (combine it with "
        "--keep-lock to keep pins anyway). --dry-run shows what would be freed. Temp files left "
        "by killed processes go too. Files that sync hard-linked into projects keep their data there.",
    )
    prune.add_argument("--all", action="store_true", help="delete every cached file")
    prune.add_argument("--older-than", metavar="DURATION", help="only files not used for this long (e.g. 30d)")
    prune.add_argument("--keep-lock", action="append", default=[], metavar="FILE",
                       help="keep the files this zoo.lock pins (local path or fsspec URL; repeatable)")
    prune.add_argument("--dry-run", action="store_true", help="show what would be deleted, delete nothing")
    add_json(prune, "what was (or would be) removed")
    prune.set_defaults(func=run_prune)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_info(args: argparse.Namespace) -> int:
    from zoostore.storage.cache import Cache

    info = Cache().info()
    if args.json:
        print_json({"path": str(info.root), "blobs": info.blobs, "bytes": info.bytes})
    else:
        print(f"path:  {info.root}")
        print(f"blobs: {info.blobs}")
        print(f"size:  {human_bytes(info.bytes)} ({info.bytes} bytes)")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    import os

    from zoostore.core.digest import Digest
    from zoostore.core.errors import UsageError
    from zoostore.documents.store_config import parse_duration
    from zoostore.ops.gc import pinned_blobs, read_lock
    from zoostore.storage.cache import Cache

    if not (args.all or args.older_than or args.keep_lock):
        raise UsageError("cache prune needs a scope: --all (empty the cache), --older-than DURATION, "
                         "or --keep-lock FILE (delete what no given zoo.lock pins); add --dry-run to see first")
    if args.all and (args.older_than or args.keep_lock):
        raise UsageError("cache prune --all deletes everything: do not combine it with --older-than or --keep-lock")
    keep: set[Digest] = set()
    for location in args.keep_lock:
        keep |= pinned_blobs(read_lock(location), where=os.fspath(location))
    older = parse_duration(args.older_than) if args.older_than else None
    cache = Cache()
    removed, freed = cache.prune(keep, older_than=older, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print_json({"path": str(cache.root), "removed": removed, "bytes": freed, "dry_run": args.dry_run,
                    "kept_pins": len(keep)})
    else:
        print(f"{verb} {removed} file(s), {human_bytes(freed)}, from {cache.root}"
              + (f"; kept what {len(args.keep_lock)} lockfile(s) pin" if args.keep_lock else ""))
    return 0
