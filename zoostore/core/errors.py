"""The error hierarchy: one root, leaves that also inherit the matching builtin.

Every message says what happened, what was expected, what was found and what to do next.
The CLI maps these classes to exit codes in one table (`zoostore.cli.EXIT_CODES`).
"""

from __future__ import annotations


class ZooError(Exception):
    """Root of every error zoostore raises on purpose."""


class UsageError(ZooError, ValueError):
    """Bad input from the user: an argument, an option or a config value."""


class InvalidDigestError(UsageError):
    """Text that should be `blake3:<64 hex>` is not."""


class InvalidVersionError(UsageError):
    """A semver version or range that does not parse."""


class InvalidPathError(UsageError):
    """A file path inside a version that would leave it (`..`, absolute, drive, backslash)."""


class ObjectNotFoundError(ZooError, FileNotFoundError):
    """A key is absent from the store."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class BlobNotFoundError(ObjectNotFoundError):
    """No recipe for a blob id."""


class NotFoundError(ZooError, FileNotFoundError):
    """A model, version, arch or file that the zoo does not have; the message lists what exists."""


class StoreNotFoundError(ZooError, FileNotFoundError):
    """The URL holds no `zoostore.toml`."""


class StoreExistsError(ZooError, FileExistsError):
    """`init` on a URL that already holds a store with other parameters."""


class FormatError(ZooError, ValueError):
    """A persisted document does not match its format: names the file and the key."""


class ConfigError(FormatError, UsageError):
    """A project file the user writes or commits (zoo.toml, zoo.lock, pyproject's
    [tool.zoostore]) is malformed: a usage error (exit 2), not a store format problem."""


class DescriptorError(FormatError, UsageError):
    """A model descriptor (model.toml, Autoware's definition.yaml) is invalid: input its
    maintainer fixes (exit 2, like a bad argument), not a store document from a newer zoostore.
    `problems` holds every problem found, `{"file", "key", "message"}` each ("key" empty when
    the whole file is wrong); the message lists them too, and `--json` error documents carry them."""

    def __init__(self, message: str, *, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    @classmethod
    def whole(cls, where: object, message: str) -> DescriptorError:
        """`<where>: <message>`, a problem with the whole file (unreadable, not TOML, missing)."""
        return cls(f"{where}: {message}", problems=[{"file": str(where), "key": "", "message": message}])


class NewerFormatError(FormatError):
    """Written by a newer zoostore than this one."""

    def __init__(self, what: str, found: int, supported: int, *, message: str = "") -> None:
        super().__init__(message or (
            f"{what} was written by a newer zoostore (format {found}); this zoostore reads up to "
            f"format {supported}: upgrade zoostore (pip install -U zoostore)"
        ))
        self.found = found
        self.supported = supported


class IntegrityError(ZooError, ValueError):
    """Bytes that do not hash to their id: corruption in the store, in transit or in a cache."""

    def __init__(self, message: str, *, obj: str = "", expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.obj = obj
        self.expected = expected
        self.actual = actual


class ConflictError(ZooError, RuntimeError):
    """A compare-and-swap write lost against a concurrent writer; retry after re-reading."""


class LockTimeoutError(ConflictError):
    """Another writer held a local store's lock for longer than the wait allowed: said once,
    not retried (a compare-and-swap loop that retried it waited that long once per attempt)."""


class CasUnsupportedError(UsageError):
    """A manifest write to a store whose server does not honour conditional writes (so concurrent
    writers could silently lose each other's changes), without the single-writer opt-in."""


class ImmutableError(ZooError, FileExistsError):
    """An attempt to change a published (version, arch) entry. `differences` lists every
    differing file (the message shows the first few); `--json` error documents carry it."""

    def __init__(self, message: str, *, differences: list[dict[str, str | None]] | None = None) -> None:
        super().__init__(message)
        self.differences = list(differences or [])


class DestinationConflictError(ZooError, FileExistsError):
    """sync wants a path in its destination that holds something it did not place (a user's
    file, a placed file modified since, a directory); it was left alone. `paths` names them."""

    def __init__(self, message: str, *, paths: list[str] | None = None) -> None:
        super().__init__(message)
        self.paths = list(paths or [])


class RemoteError(ZooError, ConnectionError):
    """A remote store kept failing (connection, timeout, HTTP 5xx) after the retry budget, or
    answered with an HTTP error that retrying cannot fix; names the URL, the status and the budget."""


class AccessDeniedError(RemoteError):
    """The store refused us: no credentials found, an unknown profile, credentials the server
    rejects, or credentials without the permission the operation needs. Retrying cannot help;
    the message names the store, the endpoint and where credentials come from."""


class ReadOnlyError(ZooError, PermissionError):
    """A write to a store or filesystem that only reads (HTTP, `zoo://`)."""


class LockOutOfDateError(ZooError, RuntimeError):
    """`--locked`: zoo.lock no longer matches zoo.toml."""


class OfflineError(ZooError, ConnectionError):
    """`--offline` needed something that only the store has."""


class ResolutionError(ZooError, LookupError):
    """No version satisfies a requirement; the message says which rule excluded what."""


class MissingDependencyError(ZooError, ImportError):
    """An optional library (onnx, onnxruntime, tvm) is not installed; the message gives the extra."""


class CheckFailedError(ZooError, RuntimeError):
    """An ONNX model failed `zoostore check`."""


class BuildError(ZooError, RuntimeError):
    """A TVM build failed; names the model, the step and the underlying error."""


class Interrupted(ZooError, KeyboardInterrupt):
    """The user interrupted the command (Ctrl-C): work stopped at the next check, temp files
    were removed, and what was verified so far stays for the next run. Exit code 130. Also a
    KeyboardInterrupt, so that code written for Ctrl-C treats it as one."""


#: What to do about a pack whose bytes are damaged (a corrupt chunk, a truncated pack). A
#: republish does not help: the store still lists the chunk, so publish reuses it.
DAMAGED_PACK_ADVICE = ("run 'zoostore verify --read-data' on the store, which reads every pack and names each "
                       "damaged one; restore that pack file from a backup or replica of the store (a "
                       "republish reuses the chunk the store already lists and does not replace it)")
