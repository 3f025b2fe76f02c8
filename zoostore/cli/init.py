"""`zoostore init STORE`: create a store (write zoostore.toml)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "init",
        help="create a store at a URL or local path",
        description="Create a zoostore store: write STORE/zoostore.toml with the chunking, pack "
        "and gc parameters. Running it again on the same store with the same parameters is a no-op.",
    )
    p.add_argument("store", metavar="STORE", help="local directory or fsspec URL (s3://bucket/zoo)")
    p.add_argument("--pack-size", default="32MiB", help="target pack size (default: %(default)s)")
    p.add_argument("--grace", default="24h",
                   help="gc grace period that publish and gc agree on, at least 10m (default: %(default)s); "
                   "change it later with 'zoostore config STORE --grace'")
    delta = p.add_mutually_exclusive_group()
    delta.add_argument("--delta", action="store_true", default=None,
                       help="the default for a new store: store a new chunk as a delta frame against the same "
                       "place of the file's previous version, and a recipe as edits of the previous version's, "
                       "when clearly smaller; executables and libraries are cut into 512 KiB chunks instead "
                       "of 64 KiB (a format-4 store: older zoostore versions refuse it; docs/format.md, "
                       "docs/design-decisions.md)")
    delta.add_argument("--no-delta", dest="delta", action="store_false", default=None,
                       help="a new store without delta frames, recipe edits or larger chunks for code "
                       "(format 1: every zoostore reads it)")
    add_json(p, "the store's URL and whether it was created")
    p.set_defaults(func=run)


def parse_size(text: str) -> int:
    from zoostore.core.errors import UsageError

    t = text.strip().lower().replace(" ", "")
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
             "k": 1024, "m": 1024**2, "g": 1024**3, "b": 1, "": 1}
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit):
            number = t[: len(t) - len(unit)] if unit else t
            try:
                return int(float(number) * units[unit])
            except ValueError:
                break
    raise UsageError(f"invalid size {text!r}: expected a number with an optional unit, e.g. 32MiB or 64M")


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.store_config import StoreConfig
    from zoostore.repository import init_store
    from zoostore.storage.params import CODE_SIZES, Chunking

    from zoostore.cli.config import check_grace
    from zoostore.core.errors import UsageError

    pack = parse_size(args.pack_size)
    if not 1024**2 <= pack <= 4 * 1024**3:
        raise UsageError(f"invalid --pack-size {args.pack_size!r}: expected between 1MiB and 4GiB (default 32MiB)")
    # Without --delta/--no-delta a new store gets delta frames, and an existing one is fine
    # whichever it has (`config --enable-delta` upgrades one; docs/design-decisions.md).
    # A new store also cuts code into larger chunks (format 4), except with --no-delta (format 1).
    chunking = Chunking(code=CODE_SIZES) if args.delta is not False else Chunking()
    config = StoreConfig(chunking=chunking, pack_target_size=pack, grace_seconds=check_grace(args.grace),
                         delta=args.delta is not False)
    store, created = init_store(args.store, config=config, any_delta=args.delta is None)
    warning = store.cas_warning()
    if not created and args.delta and not store.config.recipe_edits:
        warning = "; ".join(filter(None, [warning, (
            f"{store.url} is a format-{store.config.format} store (delta frames without recipe edits): it "
            f"was left as it is; 'zoostore config {args.store} --enable-delta' upgrades it to format 3")]))
    if args.json:
        print_json({"store": store.url, "created": created, "warnings": [warning] if warning else []})
        return 0
    print(f"{'created' if created else 'already a store:'} {store.url}")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
