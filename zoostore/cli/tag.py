"""`zoostore tag STORE MODEL TAG [VERSION] [--delete]`: move or delete a mutable tag."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import TerminalProgress, add_json, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "tag", help="point a tag (e.g. bleedingedge) at a version, or delete it",
        description="Tags are mutable pointers such as bleedingedge or stable; consumers can ask "
        "for MODEL@TAG. 'latest' is implicit (the highest non-prerelease, non-yanked version).",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("tag", metavar="TAG")
    p.add_argument("version", metavar="VERSION", nargs="?")
    p.add_argument("--delete", action="store_true", help="remove the tag")
    add_json(p, "the model's tags after the change")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.core import semver
    from zoostore.core.errors import UsageError
    from zoostore.ops.tags import tag, untag
    from zoostore.repository import open_store

    if args.delete == bool(args.version):
        raise UsageError("give either VERSION to set the tag or --delete to remove it")
    if args.version and semver.is_version(args.tag) and not semver.is_version(args.version):
        raise UsageError(f"{args.tag!r} is a version and {args.version!r} is not: the order is MODEL TAG VERSION "
                         f"(zoostore tag {args.store} {args.model} {args.version} {args.tag})")
    zoo = open_store(args.store)
    progress = TerminalProgress.for_args(args)
    if args.delete:
        m = untag(zoo, args.model, args.tag, progress=progress)
        line = f"{args.model}: deleted tag {args.tag}"
    else:
        m = tag(zoo, args.model, args.tag, args.version, progress=progress)
        line = f"{args.model}: {args.tag} -> {m.tags[args.tag]}"
    if args.json:
        print_json({"model": args.model, "tag": args.tag, "version": m.tags.get(args.tag), "tags": dict(m.tags)})
    else:
        print(line)
    return 0
