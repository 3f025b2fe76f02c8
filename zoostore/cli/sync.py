"""`zoostore sync`: place the locked files under dest, verified; nothing to do is fast."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sync", help="download and place the files zoo.lock pins (re-locking if zoo.toml changed)",
        description="Place every locked file at {dest}/{model}/{arch}/{path} (or zoo.toml's layout). Files come from the "
        "local cache or the store (only chunks no cached version holds are downloaded) and are "
        "verified before they appear. An unchanged destination is recognised without re-hashing. "
        "Files sync placed that left the lock are removed; other files are never touched: a path "
        "sync wants that holds a file it did not place is left alone and reported (exit 7) unless --force.",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--locked", action="store_true", help="fail (exit 3) if zoo.lock is out of date with zoo.toml")
    g.add_argument("--frozen", action="store_true", help="use zoo.lock as it is, without reading zoo.toml's models")
    p.add_argument("--offline", action="store_true",
                   help="never contact the store; fail naming what is not cached (also: ZOOSTORE_OFFLINE=1)")
    p.add_argument("--arch", action="append", metavar="ARCH", help="only these architectures (repeatable)")
    p.add_argument("--dest", metavar="DIR", help="destination directory (default: zoo.toml's dest)")
    p.add_argument("--link", choices=["auto", "hardlink", "copy", "symlink"], default="auto",
                   help="how files enter dest: auto = hard link when on the cache's filesystem, else copy")
    p.add_argument("--verify", action="store_true", help="re-hash every file in dest instead of trusting the state file")
    p.add_argument("--force", action="store_true",
                   help="replace files at wanted paths that sync did not place (or that were modified since); "
                   "a directory in the way is never replaced")
    p.add_argument("--project", metavar="PATH", help="zoo.toml, pyproject.toml or a directory (default: search up from here)")
    add_json(p, "the sync report")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.project import load_project
    from zoostore.ops.sync import sync_project

    project = load_project(args.project)
    progress = TerminalProgress.for_args(args)
    report = sync_project(project, locked=args.locked, frozen=args.frozen, offline=True if args.offline else None,
                          archs=args.arch, dest=args.dest, link=args.link, verify=args.verify, force=args.force,
                          progress=progress)
    if args.json:
        print_json(report.to_dict())
    elif not args.quiet:
        if report.relocked:
            print(f"zoo.lock re-locked: {', '.join(report.locked) or 'no version changed'}", file=sys.stderr)
        parts = [f"{len(report.placed)} placed", f"{report.unchanged} unchanged"]
        if report.removed:
            parts.append(f"{len(report.removed)} removed")
        if report.store_opened:
            parts.append(f"downloaded {human_bytes(report.bytes_downloaded)}")
            if report.bytes_reused:
                # Chunks of cached older versions, or of an interrupted download's kept prefix.
                parts.append(f"reused {human_bytes(report.bytes_reused)} from the cache "
                             "(older versions, interrupted downloads)")
        print(f"sync {report.dest}: {', '.join(parts)}", file=sys.stderr)
    return 0
