"""`zoostore gc STORE`: drop versions nobody keeps, delete unreferenced recipes and packs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gc", help="drop versions nobody keeps and delete what no retained version references",
        description="Without --keep/--keep-lock no version is dropped: gc only deletes recipes and "
        "packs that no manifest reaches (failed publishes, leftovers). With them, the versions of "
        "the models they name that no --keep range, no lockfile and no tag (or 'latest') retains "
        "are dropped from the manifests, then what they alone referenced is deleted. Models that "
        "no --keep/--keep-lock names keep every version. Only objects older than the grace period "
        "(the store's, 24h unless zoostore.toml says otherwise) are ever deleted, so publishing "
        "may continue while gc runs. See docs/gc.md.",
        epilog="Example (after a release): zoostore gc s3://bucket/zoo --keep-lock old/zoo.lock "
        "--keep-lock new/zoo.lock --dry-run",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("--keep", action="append", default=[], metavar="MODEL@RANGE",
                   help="keep the versions of MODEL in RANGE (a semver range or a tag; bare MODEL "
                   "keeps all); drops the model's other untagged versions (repeatable)")
    p.add_argument("--keep-lock", action="append", default=[], metavar="FILE",
                   help="keep every version this zoo.lock pins (local path or fsspec URL); drops "
                   "the other untagged versions of the models it names (repeatable)")
    p.add_argument("--grace", metavar="DURATION",
                   help="only delete objects older than this (e.g. 24h, 30m, 0s; default: the "
                   "store's grace period). Shorter than the store's is safe only when nobody publishes")
    p.add_argument("--repack", action="store_true",
                   help="rewrite old packs that are mostly dead; the old packs go in a later run")
    p.add_argument("--repack-threshold", type=float, default=0.5, metavar="FRACTION",
                   help="repack packs whose live fraction is below this (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("-y", "--yes", action="store_true",
                   help="drop versions without asking (required when stdin is not a terminal)")
    add_json(p, "the plan and the result")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.store_config import parse_duration
    from zoostore.core.errors import UsageError
    from zoostore.ops.gc import plan_gc
    from zoostore.repository import open_store

    grace = parse_duration(args.grace) if args.grace is not None else None
    progress = TerminalProgress.for_args(args)
    zoo = open_store(args.store)
    plan = plan_gc(zoo, keep=args.keep, keep_locks=args.keep_lock, grace=grace, repack=args.repack,
                   repack_threshold=args.repack_threshold, progress=progress)
    if args.json:
        return _run_json(args, plan, progress)
    print(plan)
    if args.dry_run:
        print("dry run: nothing was changed", file=sys.stderr)
        return 0
    if plan.empty:
        print("nothing to do", file=sys.stderr)
        return 0
    dropped = plan.dropped_versions
    if dropped and not args.yes:
        question = (f"drop {len(dropped)} version(s) from {zoo.url} and delete up to "
                    f"{human_bytes(plan.bytes_to_delete)}?")
        if not sys.stdin.isatty():
            raise UsageError(
                f"gc would {question[:-1]} (listed above), and stdin is not a terminal, so it cannot "
                f"ask; re-run with --yes to confirm, or with --dry-run to only print the plan"
            )
        answer = input(f"{question[0].upper()}{question[1:]} [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("aborted: nothing was changed", file=sys.stderr)
            return 1
    result = plan.execute(progress)
    print(result)
    return 0


def _run_json(args: argparse.Namespace, plan: Any, progress: Any) -> int:
    """`gc --json`: the plan, and unless --dry-run the result; never asks (needs --yes to drop)."""
    import dataclasses

    from zoostore.core.errors import UsageError

    doc: dict[str, Any] = {"dry_run": bool(args.dry_run), "plan": {
        "drop": [str(d) for d in plan.dropped_versions], "recipes": len(plan.recipes), "packs": len(plan.packs),
        "repacks": len(plan.repacks), "bytes_to_delete": plan.bytes_to_delete, "notes": list(plan.notes),
        "leftovers": len(plan.leftovers)}}
    if not args.dry_run and not plan.empty:
        if plan.dropped_versions and not args.yes:
            raise UsageError("gc --json cannot ask before dropping versions: add --yes, or --dry-run")
        result = plan.execute(progress)
        doc["result"] = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        doc["result"]["dropped"] = [str(d) for d in result.dropped]
    print_json(doc)
    return 0
