"""`zoostore catalog STORE [--output FILE] [--format md|html] [--json]`: the table of models and versions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zoostore.cli._ui import add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "catalog", help="write the table of models, versions, archs, sizes, ONNX facts and metadata",
        description="Generate the catalog of a zoo (for its README or website): per version its "
        "tags, archs, size, date, the ONNX opset, IR version, inputs and test-data results that "
        "publish recorded, runtime requirements and metadata. Markdown by default, HTML with "
        "--format html (or an --output ending in .html).",
        epilog="example: zoostore catalog s3://zoo/models -o MODELS.md --download-base https://mirror.example.org/zoo",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--format", choices=("md", "html"), help="md (default) or html; default from --output's suffix")
    p.add_argument("--download-base", metavar="URL",
                   help="link each version to URL/MODEL/VERSION/, a plain mirror written by 'zoostore export'")
    add_json(p, "the catalog's data (models, versions, tags, archs, sizes, metadata)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.ops.catalog import catalog_entries, catalog_html, catalog_markdown
    from zoostore.repository import open_store

    if args.json and args.output:
        from zoostore.core.errors import UsageError

        raise UsageError("--json prints the catalog's data on stdout and --output writes the Markdown or HTML "
                         "table to a file: give one of them")
    zoo = open_store(args.store)
    if args.json:
        print_json({"store": zoo.url, "models": catalog_entries(zoo)})
        return 0
    fmt = args.format or ("html" if args.output and args.output.suffix.lower() in (".html", ".htm") else "md")
    render = catalog_html if fmt == "html" else catalog_markdown
    text = render(zoo, download_base=args.download_base)
    if args.output:
        from zoostore.core.atomic import atomic_write

        atomic_write(args.output, text.encode("utf-8"))
    else:
        print(text, end="")
    return 0
