"""The `zoostore` command: argument parsing, the error-to-exit-code table, dispatch.

One thin module per command (`zoostore/cli/<command>.py`), each exposing
`add_parser(subparsers)` which registers its parser and sets `func` to a `run(args) -> int`.
Command modules import heavy libraries (onnx, tvm, s3fs) only inside `run`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from zoostore.core import errors

#: Command modules in the order `--help` lists them.
COMMANDS = (
    "init", "config", "publish", "publish-release", "meta", "tag", "yank", "ls", "catalog",
    "lock", "sync", "outdated", "get",
    "gc", "verify", "cache",
    "check", "build",
    "blob", "export", "completion", "cmake-dir",
)

#: The commands that open a store, and so take `--store-option KEY=VALUE`.
STORE_COMMANDS = ("init", "config", "publish", "publish-release", "meta", "tag", "yank", "ls", "catalog", "lock", "sync",
                  "outdated", "get", "gc", "verify", "blob", "export")

#: Exit codes, most specific class first. 0 ok, 1 generic failure, 2 usage.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (errors.Interrupted, 130),
    (errors.LockOutOfDateError, 3),
    (errors.IntegrityError, 4),
    (errors.NewerFormatError, 5),
    (errors.ConfigError, 2),
    (errors.DescriptorError, 2),
    (errors.FormatError, 5),
    (errors.NotFoundError, 6),
    (errors.BlobNotFoundError, 6),
    (errors.ObjectNotFoundError, 6),
    (errors.StoreNotFoundError, 6),
    (errors.ResolutionError, 6),
    (errors.LockTimeoutError, 7),
    (errors.ConflictError, 7),
    (errors.StoreExistsError, 7),
    (errors.ImmutableError, 7),
    (errors.DestinationConflictError, 7),
    (errors.ReadOnlyError, 8),
    (errors.OfflineError, 9),
    (errors.AccessDeniedError, 14),
    (errors.RemoteError, 13),
    (errors.CheckFailedError, 10),
    (errors.BuildError, 11),
    (errors.MissingDependencyError, 12),
    (errors.CasUnsupportedError, 2),
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


#: What each exit code means, for `--help` and docs (the README lists the same).
EXIT_MEANINGS = {
    0: "ok", 1: "error", 2: "usage, configuration or model descriptor error", 3: "zoo.lock out of date (--locked)",
    4: "integrity problem", 5: "format written by a newer zoostore (upgrade zoostore) or corrupt",
    6: "not found", 7: "conflict / immutable", 8: "read-only store", 9: "offline and not cached",
    10: "check failed", 11: "build failed", 12: "missing optional dependency (the message names the extra)",
    13: "remote store failing or unreachable after retries",
    14: "access denied: credentials missing, refused or without permission",
    130: "interrupted",
}
#: Exit codes each command can return besides 0, 1, 2 and 130.
COMMAND_EXIT_CODES: dict[str, tuple[int, ...]] = {
    "init": (5, 7, 8, 12, 13, 14),
    "config": (5, 6, 7, 8, 12, 13, 14),
    "publish": (4, 5, 6, 7, 8, 10, 12, 13, 14),
    "publish-release": (4, 5, 6, 7, 8, 10, 12, 13, 14),
    "tag": (5, 6, 7, 8, 13, 14),
    "yank": (5, 6, 7, 8, 13, 14),
    "ls": (5, 6, 12, 13, 14),
    "catalog": (5, 6, 12, 13, 14),
    "lock": (5, 6, 12, 13, 14),
    "sync": (3, 4, 5, 6, 7, 9, 12, 13, 14),
    "outdated": (5, 6, 12, 13, 14),
    "get": (4, 5, 6, 7, 9, 12, 13, 14),
    "gc": (4, 5, 6, 7, 8, 12, 13, 14),
    "verify": (4, 5, 6, 8, 12, 13, 14),
    "cache": (4, 5),
    "check": (5, 10, 12),
    "build": (5, 11, 12),
    "blob": (4, 5, 6, 8, 12, 13, 14),
    "completion": (),
    "cmake-dir": (),
    "export": (4, 5, 6, 12, 13, 14),
    "meta": (5, 6, 7, 8, 13, 14),
}
#: What an interrupted command tells (default: "run the command again to resume").
INTERRUPTED = {
    "publish": "nothing was published; run the command again (it uploads again what it had not committed)",
    "publish-release": "models not committed yet were not published; run the command again to finish "
                       "the release (those already published upload nothing)",
}
#: Set to 1 (or pass --debug) to see the Python traceback of an error, for bug reports.
DEBUG_ENV = "ZOOSTORE_DEBUG"


def exit_code_help(codes: Sequence[int] | None = None) -> str:
    wanted = sorted({0, 1, 2, 130, *(codes if codes is not None else EXIT_MEANINGS)})
    return "exit codes: " + "; ".join(f"{c} {EXIT_MEANINGS[c]}" for c in wanted if c in EXIT_MEANINGS)


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout at the terminal's width as `shutil.get_terminal_size` finds it,
    without importing shutil: argparse makes a formatter for every argument it adds, and the
    first import of shutil (with zlib, bz2 and lzma) was ~2.5 ms of every command's start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _columns() -> int:
    """$COLUMNS, else the width of the terminal on stdout, else 80 (shutil's rule)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors (a missing argument, an option without its value)
    also end with the JSON error document when the command line asks for --json (docs/json.md:
    a failing command's last stderr line), as every other exit-2 error does."""

    json_errors = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if not _Parser.json_errors:
            super().error(message)
        import json

        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(json.dumps({"error": {"code": 2, "kind": "UsageError", "message": f"{self.prog}: {message}"}}),
              file=sys.stderr)
        sys.exit(2)


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's parser by name; with `only`, just that command's
    (its module is the only one imported: a no-op `zoostore sync` starts faster)."""
    parser = _Parser(
        prog="zoostore",
        description=(
            "A content-addressed artifact store for model zoos: publish model files per version "
            "and architecture, lock and sync them in consumer projects, garbage-collect old ones."
        ),
        epilog="Run 'zoostore COMMAND --help' for a command's options. "
        "STORE is any fsspec URL (s3://bucket/zoo, https://host/zoo) or a local directory. "
        + exit_code_help() + ".",
    )
    from zoostore.core.version import __version__

    parser.add_argument("--version", action="version", version=f"zoostore {__version__}")
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks of errors (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        module = importlib.import_module(f"zoostore.cli.{name.replace('-', '_')}")
        module.add_parser(sub)
    commands: dict[str, argparse.ArgumentParser] = dict(sub.choices)
    for name in STORE_COMMANDS if not only else [only] if only in STORE_COMMANDS else []:
        commands[name].add_argument(
            "--store-option", action="append", default=[], metavar="KEY=VALUE",
            help="an option for the store's backend: endpoint_url, region, profile, anon=true, or any "
            "fsspec/s3fs option (repeatable; also $ZOOSTORE_STORE_OPTIONS as JSON, and [store_options] "
            "in zoo.toml; credentials stay in AWS_PROFILE/AWS_ACCESS_KEY_ID...; docs/remote-stores.md)")
    for name, command in commands.items():
        codes = exit_code_help(COMMAND_EXIT_CODES.get(name))
        # "; " so that an epilog ending in an example command does not read "--tag bleedingedge exit codes".
        command.epilog = f"{command.epilog.rstrip('.')}; {codes}." if command.epilog else codes + "."
        # `cache prune --help`, `blob put --help`: a subcommand ends with its command's exit codes too.
        for action in command._actions:
            for child in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
                child.epilog = f"{child.epilog.rstrip('.')}; {codes}." if child.epilog else codes + "."
    return parser, commands


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse like argparse, but an unknown option is reported with the command's own usage."""
    words = list(argv) if argv is not None else sys.argv[1:]
    first = words[:1]
    _Parser.json_errors = "--json" in words
    parser, commands = build_parser(first[0] if first and first[0] in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = commands.get(getattr(args, "command", None) or "", parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    args._parser = parser
    return args


def _report(exc: BaseException, code: int, args: argparse.Namespace, *, kind: str) -> None:
    message = str(exc) or type(exc).__name__
    if getattr(args, "json", False):
        import json

        # On stderr: stdout carries the command's own JSON document (check prints its report
        # and then fails), so that each stream holds at most one document.
        error: dict[str, object] = {"code": code, "kind": kind, "message": message}
        # The full lists a message shortens: the files of a refused publish (`differences`), the
        # problems of invalid descriptors (`problems`), the models a publish-release refused (`refused`).
        for key in ("differences", "problems", "refused"):
            if getattr(exc, key, None):
                error[key] = getattr(exc, key)
        print(json.dumps({"error": error}), file=sys.stderr)
    else:
        print(f"zoostore: error: {message}", file=sys.stderr)


def _store_options(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """`--store-option`s as the defaults of every store the command opens (nothing is imported
    in the usual case, a command without them)."""
    if not getattr(args, "store_option", None):
        return contextlib.nullcontext()
    from zoostore.storage.options import cli_options, parse_option_pairs

    return cli_options(parse_option_pairs(args.store_option))


def _on_sigint(signum: int, frame: object) -> None:
    """Set core.cancel's flag, then interrupt the main thread, unless the signal arrived in a
    finalizer (a weakref callback, a __del__): CPython prints an exception raised there as
    "Exception ignored ... Traceback" and drops it. The flag alone then ends the command: the
    workers stop with Interrupted, which the main thread is waiting for (exit 130 either way)."""
    from zoostore.core import cancel

    cancel.request()
    code = getattr(frame, "f_code", None)
    if code is not None and (code.co_name == "__del__"
                             or os.path.basename(code.co_filename) in ("_weakrefset.py", "weakref.py")):
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_workers_on_sigint() -> Iterator[None]:
    """Ctrl-C sets core.cancel's flag in the signal handler itself, so every worker thread stops
    its request at once (S3 requests poll the flag) instead of after the main thread's
    KeyboardInterrupt has unwound to a pool's join, which waited out a stalled request."""
    import signal

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if not getattr(args, "func", None):
        args._parser.print_help()
        return 2
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        with warnings.catch_warnings(), _store_options(args), _stop_workers_on_sigint():
            # Library warnings (a broken stale lock, ...) read like the CLI's own, without a source line.
            warnings.showwarning = lambda message, *_, **__: print(f"zoostore: warning: {message}", file=sys.stderr)
            return int(args.func(args) or 0)
    except (KeyboardInterrupt, errors.Interrupted):
        from zoostore.core import cancel

        cancel.request()
        print(f"zoostore: interrupted; {INTERRUPTED.get(args.command, 'run the command again to resume')}",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except errors.ZooError as exc:
        if debug:
            _print_traceback()
        code = exit_code_for(exc)
        _report(exc, code, args, kind=type(exc).__name__)
        return code
    except OSError as exc:
        # Disk full, permission denied, a vanished directory: the OS's words and the path.
        if debug:
            _print_traceback()
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        hint = {28: "free some disk space and run the command again",
                27: "a file grew past the size limit (ulimit -f) or the file system's; free space or raise the limit",
                1: "check the permissions of that path", 13: "check the permissions of that path",
                30: "that file system is read-only",
                2: "check that the path and the folders above it exist",
                17: "something is already at that path where a folder (or a new file) was to be made: "
                    "choose another path, or move it away",
                20: "a part of that path is a file, not a folder: choose another path",
                21: "that path is a folder where a file was expected: name a file"}.get(exc.errno or 0, "")
        hint = _cache_hint(exc, hint) if hint else ""
        _report(RuntimeError(f"{exc.strerror or exc}{where}" + (f"; {hint}" if hint else "")), 1, args,
                kind=type(exc).__name__)
        return 1
    except Exception as exc:  # a bug: say so, never dump a traceback on a user unasked
        if debug:
            _print_traceback()
        _report(RuntimeError(f"internal error: {type(exc).__name__}: {exc}. This is a zoostore bug: "
                             f"run again with --debug and report the traceback"), 1, args, kind="InternalError")
        return 1


def _cache_hint(exc: OSError, hint: str) -> str:
    """`hint`, or what to do when the path that failed is in zoostore's cache (seldom chosen)."""
    from zoostore.storage.cache import default_cache_dir

    root = str(default_cache_dir().absolute())
    if not str(exc.filename or "").startswith(root + os.sep):
        return hint
    if exc.errno == 28:
        return (f"free some disk space ('zoostore cache prune --unused' frees what no synced project uses) or set "
                f"ZOOSTORE_CACHE to a folder on a disk with room (the cache is {root}), and run the command again")
    return f"{hint}; it is zoostore's cache {root}: make that writable or set ZOOSTORE_CACHE to a folder you can write"


def _print_traceback() -> None:
    """The traceback being handled, for --debug; traceback is imported only then (it and
    textwrap cost ~1.5 ms of every command's start-up)."""
    import traceback

    traceback.print_exc()


def run() -> NoReturn:
    """The `zoostore` console script and `python -m zoostore`: `main()`, then exit without the
    interpreter's teardown when the command succeeded.

    Freeing every module and object at exit took 12-15 ms of a 400 ms first sync (a tenth of
    a no-op sync). A successful command has nothing left to do then: every file it wrote is
    closed (with blocks, atomic renames), so what the teardown would still run is what runs
    here, in the interpreter's own order: joining non-daemon threads (pool workers, idle by
    now), atexit handlers (weakref.finalize, temporary directories), flushing stdout and
    stderr. A failed command exits the usual way."""
    code = main()
    shutdown = getattr(threading, "_shutdown", None)
    # _shutdown: CPython's own first step of exiting (3.4-3.14)
    if code != 0 or shutdown is None or not _owns_the_process():
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:   # None: started with that descriptor closed (`zoostore sync >&-`)
                stream.flush()
    except BrokenPipeError:   # the reader went away (`zoostore ls | head`): as main() says for one
        code = 1
    except OSError as exc:   # stdout on a full disk: what main() says for any OSError
        if sys.stderr is not None:
            print(f"zoostore: error: writing the output failed: {exc.strerror or exc}", file=sys.stderr)
        code = 1
    _flush_c_stdio()
    os._exit(code)


def _flush_c_stdio() -> None:
    """What exit() would flush and os._exit does not: C's stdio buffers, written by a native
    library loaded in-process (TVM, onnxruntime; stdout to a pipe or file is fully buffered).
    Such libraries come with ctypes loaded (numpy and tvm import it); zoostore's own commands
    never load it, so they pay nothing here."""
    ctypes = sys.modules.get("ctypes")
    if ctypes is None:
        return
    with contextlib.suppress(Exception):   # no C library by that name (Windows): nothing to flush
        ctypes.CDLL(None).fflush(None)


def _owns_the_process() -> bool:
    """Whether zoostore is the program (its console script, `python -m zoostore`), not code that
    another program runs and then carries on after (`python -m cProfile -m zoostore` prints its
    profile when zoostore returns; runpy)."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None:
        return spec.name in ("zoostore.__main__", "zoostore.cli.__main__")
    script = getattr(main_module, "__file__", None)
    return script is not None and os.path.abspath(script) == os.path.abspath(sys.argv[0])


if __name__ == "__main__":  # pragma: no cover
    run()
