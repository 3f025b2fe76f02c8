"""The `zoostore` command: argument parsing, the error-to-exit-code table, dispatch.

One thin module per command (`zoostore/cli/<command>.py`), each exposing
`add_parser(subparsers)` which registers its parser and sets `func` to a `run(args) -> int`.
Command modules import heavy libraries (onnx, tvm, s3fs) only inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from zoostore.core import errors

#: Command modules in the order `--help` lists them.
COMMANDS = (
    "init", "publish", "tag", "yank", "ls", "catalog",
    "lock", "sync", "outdated",
    "gc", "verify", "cache",
    "check", "build",
    "blob",
)

#: Exit codes, most specific class first. 0 ok, 1 generic failure, 2 usage.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (errors.LockOutOfDateError, 3),
    (errors.IntegrityError, 4),
    (errors.NewerFormatError, 5),
    (errors.FormatError, 5),
    (errors.NotFoundError, 6),
    (errors.BlobNotFoundError, 6),
    (errors.ObjectNotFoundError, 6),
    (errors.StoreNotFoundError, 6),
    (errors.ResolutionError, 6),
    (errors.ConflictError, 7),
    (errors.StoreExistsError, 7),
    (errors.ImmutableError, 7),
    (errors.ReadOnlyError, 8),
    (errors.OfflineError, 9),
    (errors.CheckFailedError, 10),
    (errors.BuildError, 11),
    (errors.MissingDependencyError, 12),
    (errors.InvalidDigestError, 2),
    (errors.InvalidVersionError, 2),
    (errors.InvalidPathError, 2),
    (errors.UsageError, 2),
    (errors.ZooError, 1),
)


def exit_code_for(exc: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoostore",
        description=(
            "A content-addressed artifact store for model zoos: publish model files per version "
            "and architecture, lock and sync them in consumer projects, garbage-collect old ones."
        ),
        epilog="Run 'zoostore COMMAND --help' for a command's options. "
        "STORE is any fsspec URL (s3://bucket/zoo, https://host/zoo) or a local directory.",
    )
    from zoostore.core.version import __version__

    parser.add_argument("--version", action="version", version=f"zoostore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"zoostore.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"zoostore.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("zoostore: interrupted", file=sys.stderr)
        return 130
    except errors.ZooError as exc:
        print(f"zoostore: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
