"""`zoostore publish STORE MODEL VERSION PATH...`: publish files as a model version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json

if TYPE_CHECKING:
    from zoostore.core.progress import Progress
    from zoostore.documents.manifest import FileEntry
    from zoostore.ops.prehash import Prehash
    from zoostore.ops.publish import Checker, PublishPlan, PublishResult


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "publish", help="publish files as a model version for one architecture",
        description="Publish files as MODEL@VERSION. A directory publishes its files under their "
        "relative paths; a model.toml inside becomes the model's metadata and a build.toml (from "
        "'zoostore build') becomes runtime requirements. Published (version, arch) entries are "
        "immutable: identical content again succeeds and uploads nothing, different content is "
        "refused. Other architectures may join an existing version later. Only chunks the store "
        "does not have (from earlier versions of the model) are uploaded.",
        epilog="example: zoostore publish s3://zoo/models yolo-v2-tiny 1.2.0 build/x86_64 --arch x86_64 --tag bleedingedge",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION", help="semver version, e.g. 1.2.0 or 1.3.0-rc.1+20260504")
    p.add_argument("paths", metavar="PATH", nargs="+", help="files or directories to publish")
    add_version_options(p)
    p.add_argument("--summary", help="one-line model summary")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (new and stored files, tags, warnings) and change nothing")
    add_json(p, "the result (or with --dry-run the plan)")
    add_quiet(p, what=QUIET)
    p.set_defaults(func=run)


#: publish's and publish-release's -q: a script that only needs the exit status gets silence.
QUIET = ("print nothing on success (no file hashes, no summary, no bars; --dry-run still prints its plan); "
         "warnings and errors still go to stderr")


def add_version_options(p: argparse.ArgumentParser, *, each: str = "") -> None:
    """The options of the version(s) published, shared by publish and publish-release (`each`:
    " of every model" there)."""
    p.add_argument("--arch", default="any", help="architecture of these files: x86_64, aarch64, armv7l, riscv64, ... "
                   "or any (default: any); aliases such as amd64 and arm64 are normalised")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="publish what symbolic links point to even outside the published directory "
                   "(by default such a link is refused: a credentials file next to a model must never leak)")
    p.add_argument("--new-arch", action="store_true",
                   help="accept an --arch outside zoostore's known list, deliberately")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help=f"point TAG (e.g. bleedingedge) at the version{each}; repeatable")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help=f"metadata of the version{each} (value parsed as TOML if it can be: 0.71, true, \"text\"); repeatable")
    p.add_argument("--requires", action="append", default=[], metavar="KEY=RANGE",
                   help=f"runtime requirement of the version{each}, e.g. tvm='>=0.27.0 <0.28.0'; repeatable")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX check of .onnx files")
    p.add_argument("--min-opset", type=int, metavar="N",
                   help="refuse .onnx files whose default-domain opset is below N (default: 7)")


def parse_pairs(items: list[str], option: str, *, toml_values: bool) -> dict[str, Any]:
    import tomllib

    from zoostore.core.errors import UsageError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE")
        value = value.strip()
        if toml_values:
            try:
                out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
                continue
            except tomllib.TOMLDecodeError:
                pass
        out[key.strip()] = value
    return out


def onnx_checker(args: argparse.Namespace, progress: Progress) -> Checker:
    """The ONNX check (`zoostore check`), which also records each .onnx file's IR version,
    opsets, producer, inputs and outputs in the version's metadata (`meta.onnx`)."""
    from zoostore.integrations.onnx_meta import publish_checker

    policy = None
    if args.min_opset is not None:
        from zoostore.integrations.onnx_check import OpsetPolicy

        policy = OpsetPolicy(min_opset=args.min_opset)
    return publish_checker(progress, policy=policy)


def run(args: argparse.Namespace) -> int:
    from zoostore.ops.prehash import Prehash

    # First, before the imports below: hashing starts on the idle core (zoostore.ops.prehash).
    prehash = Prehash(args.paths, follow_symlinks=args.follow_symlinks).start()
    try:
        return _run(args, prehash)
    finally:
        prehash.stop()


def _run(args: argparse.Namespace, prehash: Prehash) -> int:
    from zoostore.core import semver
    from zoostore.core.errors import UsageError

    if semver.is_version(args.model) and not semver.is_version(args.version):
        raise UsageError(f"{args.model!r} is a version and {args.version!r} is not: the order is STORE MODEL VERSION "
                         f"PATH... (zoostore publish {args.store} {args.version} {args.model} ...)")
    from zoostore.ops.publish import plan_publish
    from zoostore.repository import open_store

    zoo = open_store(args.store)
    progress = TerminalProgress.for_args(args)
    plan = plan_publish(
        zoo, args.model, args.version, args.paths, arch=args.arch, tags=args.tag,
        meta=parse_pairs(args.meta, "--meta", toml_values=True),
        requires=parse_pairs(args.requires, "--requires", toml_values=False),
        summary=args.summary, check=None if args.no_check else onnx_checker(args, progress), progress=progress,
        new_arch=args.new_arch, follow_symlinks=args.follow_symlinks, prehash=prehash,
    )
    prehash.stop()   # every file is hashed: nothing more for it to do during the upload
    if plan.skipped_hidden and not args.quiet:
        from zoostore.ops.publish_inputs import hidden_note

        print(f"zoostore: {hidden_note(plan.skipped_hidden)}", file=sys.stderr)
    if args.dry_run:
        if args.json:
            print_json(plan_json(plan))
        else:
            print(plan)
        print("dry run: nothing was changed", file=sys.stderr)
        return 0
    result = plan.execute(progress)
    if args.json:
        print_json(result_json(result))
        return 0
    if args.quiet:
        return 0
    for path, entry in sorted(result.files.items()):
        print(f"{entry.blob}  {path}")
    if result.unchanged:
        print(f"{result.model}@{result.version} ({result.arch}) was already published with identical content; nothing uploaded", file=sys.stderr)
    else:
        print(f"published {result.model}@{result.version} ({result.arch}): {len(result.files)} file(s), "
              f"{human_bytes(result.size)}; uploaded {human_bytes(result.new_stored_bytes)}", file=sys.stderr)
    return 0


def plan_json(plan: PublishPlan) -> dict[str, Any]:
    """`publish --dry-run --json`'s document (without its schema), one per model in publish-release's."""
    return {**_files_json(plan.model, plan.version, plan.arch, plan.entries, plan.warnings, plan.skipped_hidden), "dry_run": True,
            "unchanged": plan.unchanged, "new": plan.new_files, "tags": list(plan.tags)}


def result_json(result: PublishResult) -> dict[str, Any]:
    """`publish --json`'s document (without its schema), one per model in publish-release's."""
    return {**_files_json(result.model, result.version, result.arch, result.files, result.warnings, result.skipped_hidden),
            "unchanged": result.unchanged, "size": result.size, "new_stored_bytes": result.new_stored_bytes}


def _files_json(model: str, version: str, arch: str, files: Mapping[str, FileEntry], warnings: list[str],
                hidden: Sequence[str]) -> dict[str, Any]:
    return {"model": model, "version": version, "arch": arch, "warnings": warnings, "skipped_hidden": list(hidden),
            "files": {p: {"blob": str(e.blob), "size": e.size} for p, e in sorted(files.items())}}
