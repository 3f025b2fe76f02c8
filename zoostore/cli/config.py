"""`zoostore config STORE [--grace DURATION] [--enable-delta]`: show a store's parameters; change the changeable ones."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import add_json, print_json

#: The shortest grace period `init` and `config` accept. Every publish must finish within half
#: of it (docs/gc.md); below a few minutes, ordinary uploads would be refused.
MIN_GRACE_SECONDS = 600.0


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "config", help="show a store's parameters, or change its gc grace period",
        description="Print STORE's zoostore.toml parameters. Chunking, packs and codecs are fixed "
        "when the store is created; the gc grace period may change (--grace): publish and gc read "
        "it at the start of every run, so change it when neither is running.",
    )
    p.add_argument("store", metavar="STORE", help="local directory or fsspec URL (s3://bucket/zoo)")
    p.add_argument("--grace", metavar="DURATION", help="set the gc grace period (e.g. 48h; at least 10m)")
    p.add_argument("--enable-delta", action="store_true",
                   help="let publish store new chunks as delta frames and recipes as edits of the previous "
                   "version's (store format 3, a format-4 store stays 4: zoostore versions without them "
                   "then refuse the store; "
                   "cannot be undone; docs/format.md)")
    add_json(p, "the parameters")
    p.set_defaults(func=run)


def check_grace(text: str) -> float:
    from zoostore.core.errors import UsageError
    from zoostore.documents.store_config import parse_duration

    seconds = parse_duration(text)
    if not MIN_GRACE_SECONDS <= seconds <= 10 * 365 * 86400:
        raise UsageError(f"invalid grace period {text!r}: expected between 10m and 3650d, got {seconds:g} s. "
                         "Every publish must finish within half the grace period; 24h is the default")
    return seconds


def run(args: argparse.Namespace) -> int:
    from zoostore.documents.store_config import chunking_table, format_duration
    from zoostore.repository import enable_delta, open_store, set_grace
    from zoostore.storage.codec import CODEC_NAMES

    store = open_store(args.store)
    config = set_grace(store, check_grace(args.grace)) if args.grace else store.config
    if args.enable_delta:
        config = enable_delta(store)
    doc = {
        "store": store.url, "format": config.format,
        "chunking": chunking_table(config.chunking),
        "pack_target_size": config.pack_target_size, "codecs": [CODEC_NAMES.get(c, str(c)) for c in config.codecs],
        "zstd_level": config.zstd_level, "grace": format_duration(config.grace_seconds),
        "delta": config.delta,
    }
    if args.json:
        print_json(doc)
    else:
        for key, value in doc.items():
            print(f"{key}: {value}")
    return 0
