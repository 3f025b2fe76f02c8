"""`zoostore cache info|verify|prune`: the local cache of verified files (see zoostore.storage.cache)."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json


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
    verify = commands.add_parser(
        "verify", help="re-hash every cached file; drop damaged ones (exit 4 if any)",
        description="Hash every cached file again, ignoring verified stamps, and drop each one that no "
        "longer hashes to its name (the next sync or fetch gets it again). Exits 4 when it dropped "
        "any, else 0. Safe while other syncs and prunes run. Sync and fetch already check each "
        "cached file before use; this checks the whole cache at once, e.g. after restoring it in CI.",
    )
    add_json(verify, "the files checked and dropped")
    add_quiet(verify)
    verify.set_defaults(func=run_verify)
    prune = commands.add_parser(
        "prune", help="delete cached files: --unused, --older-than DURATION, or --all",
        description="Delete cached files in an explicit scope. --unused deletes what no project "
        "uses; --older-than DURATION deletes what was not used for that long; --all empties the "
        "cache. Except with --all, files are kept that a synced project's .zoostore-state.json "
        "lists (every destination sync placed files into, while it still exists; "
        "--ignore-projects drops that) and that a --keep-lock FILE pins. --dry-run shows what "
        "would be freed. Temp files left by killed processes go too. Files that sync hard-linked "
        "into projects keep their data there.",
    )
    prune.add_argument("--all", action="store_true", help="delete every cached file")
    prune.add_argument("--unused", action="store_true",
                       help="delete what no synced project uses and no --keep-lock pins")
    prune.add_argument("--older-than", metavar="DURATION", help="only files not used for this long (e.g. 30d)")
    prune.add_argument("--keep-lock", action="append", default=[], metavar="FILE",
                       help="also keep the files this zoo.lock pins (local path or fsspec URL; repeatable)")
    prune.add_argument("--ignore-projects", action="store_true",
                       help="do not keep the files of synced projects (their copies in the projects stay)")
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
        print_json({"path": str(info.root), "blobs": info.blobs, "bytes": info.bytes,
                    "stale_temps": info.stale_temps, "stale_temp_bytes": info.stale_temp_bytes, "format": info.format})
    else:
        print(f"path:  {info.root}")
        print(f"blobs: {info.blobs}")
        print(f"size:  {human_bytes(info.bytes)} ({info.bytes} bytes)")
        if info.format == 1:
            print("format: 1 (fan-out folders, as an earlier zoostore made it; it keeps working as it is. A new "
                  "cache, format 2, makes far fewer folders: delete this folder to start one)")
        else:
            print(f"format: {info.format}")
        if info.stale_temps:
            print(f"stale temp files: {info.stale_temps} ({human_bytes(info.stale_temp_bytes)}), left by "
                  "killed processes; 'zoostore cache prune' removes them")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from zoostore.storage.cache import Cache

    result = Cache().verify(progress=TerminalProgress.for_args(args))
    if args.json:
        print_json({"path": str(result.root), "ok": not result.damaged, "files": result.files, "bytes": result.bytes,
                    "damaged": [str(blob) for blob in result.damaged]})
    else:
        for blob in result.damaged:
            print(f"damaged: {blob} (dropped; the next sync or fetch gets it again)")
        print(f"verified {result.files} file(s), {human_bytes(result.bytes)}, in {result.root}: "
              + (f"{len(result.damaged)} damaged and dropped" if result.damaged else "all intact"))
    return 4 if result.damaged else 0


def run_prune(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from zoostore.core.digest import Digest
    from zoostore.core.errors import UsageError
    from zoostore.documents.store_config import parse_duration
    from zoostore.ops.cache_users import project_pins
    from zoostore.ops.gc import pinned_blobs, read_lock
    from zoostore.storage.cache import Cache

    if not (args.all or args.unused or args.older_than or args.keep_lock):
        raise UsageError("cache prune needs a scope: --unused (what no synced project uses), "
                         "--older-than DURATION, or --all (empty the cache); add --dry-run to see first")
    if args.all and (args.unused or args.older_than or args.keep_lock or args.ignore_projects):
        raise UsageError("cache prune --all deletes everything: do not combine it with other options but --dry-run")
    cache = Cache()
    keep: set[Digest] = set()
    projects: list[Path] = []
    if not args.all and not args.ignore_projects:
        keep, projects = project_pins(cache, forget_missing=not args.dry_run)
    for location in args.keep_lock:
        keep |= pinned_blobs(read_lock(location), where=os.fspath(location))
    older = parse_duration(args.older_than) if args.older_than else None
    removed, freed = cache.prune(keep, older_than=older, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print_json({"path": str(cache.root), "removed": removed, "bytes": freed, "dry_run": args.dry_run,
                    "kept_pins": len(keep), "projects": [str(p) for p in projects]})
    else:
        kept = []
        if projects:
            kept.append(f"{len(projects)} synced project(s) use")
        if args.keep_lock:
            kept.append(f"{len(args.keep_lock)} lockfile(s) pin")
        print(f"{verb} {removed} file(s), {human_bytes(freed)}, from {cache.root}"
              + (f"; kept what {' and '.join(kept)}" if kept else ""))
    return 0
