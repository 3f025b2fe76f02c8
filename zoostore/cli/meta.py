"""`zoostore meta STORE MODEL VERSION KEY=VALUE...`: edit one version's metadata."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "meta", help="set or remove metadata of one published version",
        description="Set KEY=VALUE pairs (value parsed as TOML if it can be) in MODEL@VERSION's "
        "metadata; KEY= with nothing removes KEY. Files are never changed.",
        epilog="example: zoostore meta s3://zoo/models yolo-v2-tiny 1.2.0 dataset=coco17 map=0.71",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("pairs", metavar="KEY=VALUE", nargs="+")
    add_json(p, "the version's metadata after the change")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.cli.publish import parse_pairs
    from zoostore.ops.publish import edit_meta
    from zoostore.repository import open_store

    changes = {k: (None if v == "" else v) for k, v in parse_pairs(args.pairs, "meta", toml_values=True).items()}
    release = edit_meta(open_store(args.store), args.model, args.version, changes)
    if args.json:
        print_json({"model": args.model, "version": release.version, "meta": dict(release.meta)})
        return 0
    for k, v in sorted(release.meta.items()):
        print(f"{k} = {v!r}")
    return 0
