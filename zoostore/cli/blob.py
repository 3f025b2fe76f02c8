"""`zoostore blob put|get|cat`: plumbing over content-addressed blobs, for scripts and debugging."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_quiet, human_bytes


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "blob", help="store and fetch raw files by BLAKE3 id (plumbing)",
        description="Plumbing for scripts and debugging: store files as blobs (chunked, "
        "deduplicated, compressed) and get them back verified by their BLAKE3 id.",
    )
    bsub = p.add_subparsers(dest="blob_command", metavar="SUBCOMMAND", required=True)
    put = bsub.add_parser("put", help="store files; prints 'blake3:<hex>  FILE' per file",
                          description="Store files as blobs. Prints one 'blake3:<hex>  FILE' line "
                          "per file (the hex is what b3sum prints), then a summary on stderr.")
    put.add_argument("store", metavar="STORE")
    put.add_argument("files", metavar="FILE", nargs="+", type=Path)
    add_quiet(put)
    put.set_defaults(func=run_put)
    get = bsub.add_parser("get", help="write a blob to a file, verified",
                          description="Fetch a blob and write it to DEST. DEST appears only after "
                          "every chunk and the whole file are verified; nothing is left on failure.")
    get.add_argument("store", metavar="STORE")
    get.add_argument("blob", metavar="BLOB", help="blake3:<hex> or bare hex")
    get.add_argument("dest", metavar="DEST", type=Path)
    add_quiet(get)
    get.set_defaults(func=run_get)
    cat = bsub.add_parser("cat", help="write a blob (or a byte range of it) to stdout")
    cat.add_argument("store", metavar="STORE")
    cat.add_argument("blob", metavar="BLOB")
    cat.add_argument("--range", metavar="START-END", help="bytes [START, END) only")
    cat.set_defaults(func=run_cat)


def run_put(args: argparse.Namespace) -> int:
    from zoostore.core.errors import UsageError
    from zoostore.repository import open_store

    for f in args.files:
        if not f.is_file():
            raise UsageError(f"{f}: not a file (blob put stores regular files; for a directory use 'zoostore publish')")
    store = open_store(args.store)
    progress = TerminalProgress.for_args(args)
    results = store.blobs.put_files(args.files, progress=progress)
    raw = sum(r.size for r in results)
    new_raw = sum(r.new_raw_bytes for r in results)
    stored = sum(r.new_stored_bytes for r in results)
    for r in results:
        print(f"{r.blob}  {r.path}")
    if not args.quiet:
        ratio = f"{stored / new_raw:.1%} of raw" if new_raw else "nothing new"
        print(f"{len(results)} file(s), {human_bytes(raw)}; new: {human_bytes(new_raw)} in "
              f"{sum(r.new_chunks for r in results)} chunks, stored as {human_bytes(stored)} ({ratio}); "
              f"deduplicated: {human_bytes(raw - new_raw)}", file=sys.stderr)
    return 0


def run_get(args: argparse.Namespace) -> int:
    from zoostore.core.digest import Digest
    from zoostore.repository import open_store

    blob = Digest.parse(args.blob)
    store = open_store(args.store)
    dest = store.blobs.get_file(blob, args.dest, progress=TerminalProgress.for_args(args))
    if not args.quiet:
        print(f"{blob}  {dest}", file=sys.stderr)
    return 0


def run_cat(args: argparse.Namespace) -> int:
    from zoostore.core.digest import Digest
    from zoostore.core.errors import UsageError
    from zoostore.repository import open_store

    blob = Digest.parse(args.blob)
    store = open_store(args.store)
    out = sys.stdout.buffer
    if args.range:
        try:
            start_s, end_s = args.range.split("-", 1)
            start, end = int(start_s), int(end_s)
        except ValueError:
            raise UsageError(f"invalid --range {args.range!r}: expected START-END, e.g. 0-4096") from None
        out.write(store.blobs.read_range(blob, start, end))
    else:
        recipe = store.blobs.recipe(blob)
        for data in store.blobs.iter_chunks(recipe):
            out.write(data)
    out.flush()
    return 0
