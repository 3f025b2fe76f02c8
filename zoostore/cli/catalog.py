"""`zoostore catalog STORE [--output FILE]`: the Markdown table of models and versions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "catalog", help="write the Markdown table of models, versions, archs, sizes and metadata",
        description="Generate the Markdown catalog of a zoo (for its README).",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    add_json(p, "the catalog's data (models, versions, tags, archs, sizes, metadata)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.ops.catalog import catalog_entries, catalog_markdown
    from zoostore.repository import open_store

    zoo = open_store(args.store)
    if args.json:
        print_json({"store": zoo.url, "models": catalog_entries(zoo)})
        return 0
    text = catalog_markdown(zoo)
    if args.output:
        from zoostore.core.atomic import atomic_write

        atomic_write(args.output, text.encode("utf-8"))
    else:
        print(text, end="")
    return 0
