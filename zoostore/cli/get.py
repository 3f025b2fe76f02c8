"""`zoostore get MODEL@SPEC [DEST]`: a whole version's files, cached and verified, under their
own names (the snapshot directory `zoostore.fetch_version` returns), or copied to DEST."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "get", help="fetch a whole model version; print its directory, or copy it to DEST",
        description="Fetch every file of MODEL@SPEC for one architecture (its own files and the "
        "'any' ones) into the local cache, verified, and print the version's snapshot directory, "
        "where the files sit under their own names (hard links to the cache: read-only, do not "
        "edit them). With DEST, copy the files to DEST/<path> instead (read-only copies, hashed "
        "again; a different file already there is left alone, exit 7, unless --force). The store "
        "is --store, else $ZOOSTORE_STORE, else the nearest zoo.toml's.",
    )
    p.add_argument("target", metavar="MODEL@SPEC", help="a model and a version, range or tag (default: latest)")
    p.add_argument("dest", metavar="DEST", nargs="?", help="copy the files into this directory")
    p.add_argument("--store", metavar="STORE", help="the store's URL or directory")
    p.add_argument("--arch", metavar="ARCH", help="the architecture (default: this machine's)")
    p.add_argument("--offline", action="store_true",
                   help="never contact the store; fail naming what is not cached (also: ZOOSTORE_OFFLINE=1)")
    p.add_argument("--force", action="store_true", help="with DEST: replace files there that differ")
    add_json(p, "the version fetched")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.ops.fetch import copy_snapshot, snapshot_version

    _refuse_store_first(args)
    snap = snapshot_version(args.target, arch=args.arch, store=args.store, offline=True if args.offline else None,
                            progress=TerminalProgress.for_args(args))
    copied = copy_snapshot(snap, args.dest, force=args.force) if args.dest else None
    where = args.dest if args.dest else str(snap.directory)
    if args.json:
        print_json({"model": snap.model, "version": snap.version, "arch": snap.arch, "path": str(snap.directory),
                    "dest": args.dest, "copied": copied,
                    "files": [{"path": p, "blob": str(e.blob), "size": e.size} for p, e in sorted(snap.files.items())]})
        return 0
    if copied is not None and not args.quiet:
        print(f"{snap.model}@{snap.version} ({snap.arch}): {len(snap.files)} file(s), {len(copied)} copied "
              f"to {where}", file=sys.stderr)
    print(where)
    return 0


def _refuse_store_first(args: argparse.Namespace) -> None:
    """`zoostore get STORE MODEL@SPEC`, the order `publish` and `ls` take, would read STORE as
    the model and MODEL@SPEC as DEST: say how get names a store instead."""
    import os

    from zoostore.core.errors import UsageError
    from zoostore.documents.store_config import CONFIG_KEY

    target = args.target
    looks_like_store = "://" in target or os.path.isfile(os.path.join(target, CONFIG_KEY))
    if args.store is None and "@" not in target and looks_like_store:
        rest = f" {args.dest}" if args.dest else " MODEL@SPEC"
        raise UsageError(f"{target!r} is a store, not MODEL@SPEC: zoostore get takes the store as --store "
                         f"(zoostore get --store {target}{rest} [DEST])")
