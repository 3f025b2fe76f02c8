"""`zoostore ls STORE [MODEL[@RANGE] | MODEL VERSION] [--json]`: models, versions, files."""

from __future__ import annotations

import argparse
from typing import Any

from zoostore.cli._ui import add_json, human_bytes, ljust, print_json


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ls", help="list models, a model's versions, or a version's files",
        description="Without MODEL: every model with its latest version. With MODEL[@RANGE]: "
        "the versions (archs, sizes, tags, yanked). With MODEL@VERSION, MODEL VERSION (a version, "
        "tag or range) or --files: also each version's files per arch, with sizes and blob ids.",
        epilog="example: zoostore ls s3://zoo/models yolo-v2-tiny 1.2.0",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("target", metavar="MODEL[@RANGE]", nargs="?")
    p.add_argument("version", metavar="VERSION", nargs="?",
                   help="a version, tag or range of MODEL whose files to list (the same as MODEL@VERSION)")
    p.add_argument("--files", action="store_true", help="list files of every matching version")
    add_json(p, "the listing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.core.spec import ModelSpec
    from zoostore.documents.resolve import select_versions
    from zoostore.repository import open_store

    zoo = open_store(args.store)
    if not args.target and args.version is None:
        rows: list[dict[str, Any]] = []
        for name in zoo.models():
            m = zoo.manifest(name)
            rows.append({"model": name, "latest": m.latest(), "versions": len(m.versions),
                         "tags": dict(m.tags), "summary": m.summary})
        if args.json:
            print_json({"models": rows})
        else:
            for row in rows:
                print(f"{row['model']:30} latest={row['latest'] or '-':12} versions={row['versions']:<4} {row['summary']}")
        return 0
    target = ModelSpec.parse(args.target)
    model, spec = target.model, target.spec if target.explicit else ""
    if args.version is not None:
        if target.explicit:
            from zoostore.core.errors import UsageError

            raise UsageError(f"ls: {args.target!r} already names a version; give MODEL@VERSION or MODEL VERSION, "
                             f"not both (e.g. zoostore ls STORE {model} {args.version})")
        spec = args.version.strip()
        if not spec:
            from zoostore.core.errors import UsageError

            raise UsageError(f"ls: empty VERSION; expected a version, tag or range of {model}, e.g. 1.2.0")
    m = zoo.manifest(model)
    versions = select_versions(m, spec) if spec else m.sorted_versions()
    if spec and not versions and m.versions:
        from zoostore.core.errors import ResolutionError

        raise ResolutionError(f"no version of {model} matches {spec!r}; versions: {', '.join(m.sorted_versions())}")
    show_files = args.files or args.version is not None or (bool(spec) and len(versions) == 1)
    out = []
    for v in versions:
        r = m.versions[v]
        entry: dict[str, Any] = {
            "version": v, "archs": r.archs, "size": r.size, "tags": m.tags_of(v),
            "yanked": r.yanked, "published": r.published.isoformat(), "requires": dict(r.requires),
            "meta": dict(r.meta),
        }
        if show_files:
            entry["files"] = [{"arch": a, "path": p, "blob": str(e.blob), "size": e.size} for a, p, e in r.blobs()]
        out.append(entry)
    if args.json:
        print_json({"model": model, "summary": m.summary, "meta": dict(m.meta), "versions": out})
        return 0
    for e in out:
        flags = f" tags={','.join(e['tags'])}" if e["tags"] else ""
        flags += f" YANKED({e['yanked']})" if e["yanked"] else ""
        print(f"{model}@{e['version']:16} {','.join(e['archs']):20} {human_bytes(e['size']):>10}  {e['published'][:10]}{flags}")
        for f in e.get("files", []):
            print(f"    {f['arch']:8} {ljust(f['path'], 40)} {human_bytes(f['size']):>10}  {f['blob']}")
    return 0
