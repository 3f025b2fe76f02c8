"""`zoostore publish-release STORE VERSION DIR...`: publish several models as one release."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.cli._ui import TerminalProgress, add_json, add_quiet, human_bytes, print_json
from zoostore.cli.publish import QUIET, add_version_options, onnx_checker, parse_pairs, plan_json, result_json
from zoostore.core.errors import CheckFailedError, DescriptorError, FormatError, ImmutableError, ZooError

if TYPE_CHECKING:
    from zoostore.ops.prehash import Prehash
    from zoostore.ops.publish import PublishPlan, PublishResult
    from zoostore.repository import Store


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "publish-release", help="publish several models' directories as one release VERSION",
        description="Publish each DIR as the model named after the directory (or MODEL=DIR), all as "
        "VERSION for one architecture, in one pass: every model is planned and checked first (an "
        "immutable conflict refuses the release before anything is uploaded), the new files of all "
        "of them share one upload, then each model's manifest is updated. The same as 'zoostore "
        "publish' per model (with its options, all but --summary: a model.toml's still applies), "
        "only faster for a zoo's release: one start, and packs shared across models. Models are "
        "committed one by one: if one fails, those before it stay published, and running the "
        "command again finishes the release.",
        epilog="example: zoostore publish-release s3://zoo/models 1.3.0 out/x86_64/* --arch x86_64 --tag bleedingedge",
    )
    p.add_argument("store", metavar="STORE")
    p.add_argument("version", metavar="VERSION", help="semver version of every model, e.g. 1.3.0")
    p.add_argument("dirs", metavar="DIR", nargs="+",
                   help="a model's directory, published as the model named after it; MODEL=DIR names it")
    add_version_options(p, each=" of every model")
    p.add_argument("--dry-run", action="store_true", help="print every model's plan and change nothing")
    add_json(p, "the results under \"models\", one per model (or with --dry-run the plans)")
    add_quiet(p, what=QUIET)
    p.set_defaults(func=run)


def model_dirs(items: list[str]) -> list[tuple[str, Path]]:
    """(model, directory) for each DIR or MODEL=DIR argument (an existing path wins over '='),
    every name checked before anything is read. A DIR's model is the last part of the path as
    given (a symbolic link's own name, not its target's; `.` and `..` taken lexically)."""
    from zoostore.core.errors import UsageError
    from zoostore.core.names import check_model_name

    out: list[tuple[str, Path]] = []
    for item in items:
        name, sep, rest = item.partition("=")
        named = bool(sep) and not Path(item).exists() and "/" not in name
        if named and not rest:
            # `yolo=$OUT` with $OUT unset: Path("") is ".", which would publish the working directory.
            raise UsageError(f"publish-release: {item!r} names no directory; expected MODEL=DIR, "
                             f"e.g. yolo=out/x86_64/yolo")
        folder = Path(rest) if named else Path(item)
        model = name if named else Path(os.path.abspath(item)).name
        if not folder.is_dir():
            what = "is not a directory" if folder.exists() else "does not exist"
            raise UsageError(f"publish-release: {str(folder)!r} {what}; expected one directory "
                             f"per model (MODEL=DIR to name it), e.g. out/x86_64/yolo")
        try:
            check_model_name(model)
        except UsageError as exc:
            raise UsageError(f"publish-release: {item}: {exc}" + ("" if named else "; or name the model with MODEL=DIR")) from None
        for (other, _), given in zip(out, items):
            if other == model:
                raise UsageError(f"publish-release: model {model!r} is given twice ({given} and {item}); give "
                                 f"each model once, or name one with MODEL=DIR")
        out.append((model, folder))
    return out


def run(args: argparse.Namespace) -> int:
    from zoostore.ops.prehash import Prehash

    # First, before the imports below (zoostore.ops.prehash): hashing starts on the idle core.
    prehash = Prehash([_folder(item) for item in args.dirs], follow_symlinks=args.follow_symlinks).start()
    try:
        return _run(args, prehash)
    finally:
        prehash.stop()


def _folder(item: str) -> str:
    """The directory a DIR or MODEL=DIR argument names, as `model_dirs` reads it (unchecked)."""
    name, sep, rest = item.partition("=")
    return rest if sep and not os.path.exists(item) and "/" not in name else item


def _run(args: argparse.Namespace, prehash: Prehash) -> int:
    from zoostore.core.semver import parse_version
    from zoostore.ops.release import check_release, execute_release
    from zoostore.repository import open_store

    # The version first: `STORE DIR VERSION` (swapped) says the version is wrong, not that a
    # directory named like a version is missing.
    parse_version(args.version)
    zoo = open_store(args.store)
    progress = TerminalProgress.for_args(args)
    plans = _plan_all(zoo, args, progress, prehash)
    prehash.stop()   # every file is hashed: nothing more for it to do during the upload
    check_release(plans)
    hidden = [f"{p.model}/{h}" for p in plans for h in p.skipped_hidden]
    if hidden and not args.quiet:
        from zoostore.ops.publish_inputs import hidden_note

        print(f"zoostore: {hidden_note(hidden)}", file=sys.stderr)
    if args.dry_run:
        if args.json:
            print_json({"dry_run": True, "models": [plan_json(p) for p in plans]})
        else:
            print("\n\n".join(str(p) for p in plans))
        print("dry run: nothing was changed", file=sys.stderr)
        return 0
    results: list[PublishResult] = []
    try:
        execute_release(plans, progress, published=results)
    except ZooError:
        if args.json and results:
            # The models committed before the failure, as a document of their own (the error
            # document goes to stderr): complete is false.
            print_json({"models": [result_json(r) for r in results], "complete": False})
        raise
    if args.json:
        print_json({"models": [result_json(r) for r in results], "complete": True})
        return 0
    if args.quiet:
        return 0
    tagged = f"; tagged {', '.join(plans[0].tags)}" if plans[0].tags else ""
    for r in results:
        state = "unchanged (already published)" if r.unchanged else f"uploaded {human_bytes(r.new_stored_bytes)}"
        print(f"{r.model}@{r.version} ({r.arch}): {len(r.files)} file(s), {human_bytes(r.size)}; {state}{tagged}")
    unchanged = sum(r.unchanged for r in results)
    already = f" ({unchanged} of them already published)" if unchanged else ""
    print(f"published {len(results)} model(s) as {results[0].version}{already}: "
          f"{human_bytes(sum(r.size for r in results))}, uploaded {human_bytes(sum(r.new_stored_bytes for r in results))}",
          file=sys.stderr)
    return 0


#: Why publish-release refuses a model at planning; every model is planned before one is raised.
Refusal = ImmutableError | CheckFailedError | FormatError


def _plan_all(zoo: Store, args: argparse.Namespace, progress: TerminalProgress,
              prehash: Prehash | None = None) -> list[PublishPlan]:
    """Every model's plan; a model refused (a conflict with what is published, a failed ONNX
    check, an invalid model.toml or definition.yaml) does not stop the planning of the others,
    so one run names every refused model."""
    from zoostore.ops.publish import plan_publish

    meta = parse_pairs(args.meta, "--meta", toml_values=True)
    requires = parse_pairs(args.requires, "--requires", toml_values=False)
    check = None if args.no_check else onnx_checker(args, progress)
    plans: list[PublishPlan] = []
    refused: list[tuple[str, Refusal]] = []
    items = model_dirs(args.dirs)
    for model, folder in items:
        try:
            plans.append(plan_publish(zoo, model, args.version, [folder], arch=args.arch, tags=args.tag, meta=meta,
                                      requires=requires, check=check, progress=progress, new_arch=args.new_arch,
                                      follow_symlinks=args.follow_symlinks, prehash=prehash))
        except (ImmutableError, CheckFailedError, FormatError) as exc:
            refused.append((model, exc))
    if len(refused) > 1:
        raise _refusal(refused, len(items))
    if refused:
        raise refused[0][1]
    return plans


#: Refused models shown in full: each takes up to a dozen lines (its own list is shortened to
#: ten), so ten of them buried the summary under ~130 lines; the others are named in one line.
REFUSALS_IN_FULL = 3


def _refusal(refused: list[tuple[str, Refusal]], models: int) -> ZooError:
    """One error for every refused model: the first `REFUSALS_IN_FULL` in full (each list
    already shortened), the others by name; for --json, every refusal's full message stays in
    `refused`, every differing file in `differences` and every descriptor problem in `problems`.
    The first refusal's kind gives the exit code (7 conflict, 10 check failed, 2 invalid descriptor)."""
    text = (f"{len(refused)} of {models} models were refused (a conflict with what is published, a failed "
            "ONNX check, or an invalid model.toml or definition.yaml); nothing was uploaded:\n"
            + "\n".join(str(exc) for _, exc in refused[:REFUSALS_IN_FULL]))
    if len(refused) > REFUSALS_IN_FULL:
        more = len(refused) - REFUSALS_IN_FULL
        text += (f"\n... and {more} more model{'s' if more > 1 else ''} refused: "
                 f"{', '.join(m for m, _ in refused[REFUSALS_IN_FULL:])} (--json lists each in full under error.refused)")
    first = refused[0][1]
    failed: ZooError = (ImmutableError(text) if isinstance(first, ImmutableError)
                        else CheckFailedError(text) if isinstance(first, CheckFailedError)
                        else DescriptorError(text) if isinstance(first, DescriptorError) else FormatError(text))
    # Whichever refusal comes first, the lists stay whole for --json (a conflict's message says
    # '--json lists every one'; a descriptor's problems are data there).
    failed.differences = [d for _, exc in refused if isinstance(exc, ImmutableError) for d in exc.differences]  # type: ignore[attr-defined]
    failed.problems = [p for _, exc in refused if isinstance(exc, DescriptorError) for p in exc.problems]  # type: ignore[attr-defined]
    failed.refused = [{"model": m, "kind": type(exc).__name__, "message": str(exc)} for m, exc in refused]  # type: ignore[attr-defined]
    return failed

