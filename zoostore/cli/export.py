"""`zoostore export STORE DEST`: plain, verified files with SHA256SUMS, for curl and CMake."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="write a plain mirror ({model}/{version}/{arch}/{path}, SHA256SUMS, index.json)",
        description="Write every file of the store's model versions as a plain file at "
        "DEST/{model}/{version}/{arch}/{path}, verified, with a SHA256SUMS per version directory "
        "(sha256sum -c format) and DEST/index.json listing each file's sha256, size and blob, so "
        "curl, wget and CMake's file(DOWNLOAD ... EXPECTED_HASH SHA256=...) can fetch them. DEST "
        "is a directory or any fsspec URL. Incremental: files already exported with the same "
        "content are skipped. Nothing is ever deleted from DEST.",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("dest", metavar="DEST", help="directory or fsspec URL of the mirror")
    p.add_argument("--model", action="append", metavar="MODEL", help="only this model (repeatable)")
    add_json(p, "the summary")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.ops.export import export_store
    from zoostore.repository import open_store

    zoo = open_store(args.store)
    progress = TerminalProgress(quiet=args.quiet or args.json)
    report = export_store(zoo, args.dest, models=args.model, progress=progress)
    if args.json:
        print_json(report.to_dict())
    elif not args.quiet:
        print(f"export {report.dest}: {len(report.written)} written ({human_bytes(report.bytes_written)}), "
              f"{report.skipped} unchanged", file=sys.stderr)
    return 0
