"""A consumer project's declaration: `zoo.toml`, or `[tool.zoostore]` in `pyproject.toml`.

    store = "s3://bucket/zoo"          # any fsspec URL or a path (relative to this file)
    archs = ["x86_64", "aarch64"]      # default: this machine's
    new_archs = ["sparc64"]            # archs outside zoostore's list, named deliberately
    dest = "models"                    # sync places {dest}/{layout}
    layout = "{model}/{arch}/{path}"   # the default; "{model}/{path}" for single-arch consumers
    [store_options]                    # endpoint_url, region, profile, anon, any fsspec option;
    endpoint_url = "https://s3.example.org"   # never credentials (zoostore.storage.options)
    [runtime]
    tvm = "0.27.0"                     # checked against versions' `requires`
    [models]
    yolo-v2-tiny = "^1.2"
    centerpoint = { version = "bleedingedge", archs = ["x86_64"], files = ["*.so", "*.json"] }

The project is found by walking up from the current directory to the first `zoo.toml`, or
`pyproject.toml` with a `[tool.zoostore]` table. `zoo.lock` sits next to it.

Which store is read is decided here, once, by `find_store_url`, for every caller: `zoostore
lock` and `sync`, `zoostore.fetch`, and `zoo://`. See its docstring for the precedence.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from zoostore.core.errors import ConfigError, InvalidPathError, UsageError, ZooError
from zoostore.core.names import check_model_name, check_relpath, host_arch, normalize_arch
from zoostore.core.records import dataclass

CONFIG_NAME = "zoo.toml"
#: Names the store to read, overriding zoo.toml's `store` (a mirror, a CI cache); see find_store_url.
STORE_ENV = "ZOOSTORE_STORE"
LOCK_NAME = "zoo.lock"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
#: Where sync places a file under dest, unless zoo.toml says `layout = ...`.
DEFAULT_LAYOUT = "{model}/{arch}/{path}"
#: The placeholders a layout may use. No {version}: a consumer with fixed expectations (a CMake
#: file, a launch file naming models/<network>/deploy_lib.so) must not see its paths move when
#: `lock --upgrade` moves a pin; the version is in zoo.lock (and a build's generated header).
LAYOUT_FIELDS = ("model", "arch", "path")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where sync places a locked file under dest: a template such as `{model}/{arch}/{path}`."""

    template: str = DEFAULT_LAYOUT

    @classmethod
    def parse(cls, value: Any, *, where: str = "layout") -> Layout:
        """A layout, validated: a relative POSIX template whose placeholders are {model},
        {arch} and {path}, ending with `{path}` as its own component(s) (files keep their
        names and subfolders: TVM loads `deploy_lib.so`, ONNX finds external data beside the
        model). Anything else is a ConfigError saying what is expected."""
        expected = (f"expected a relative path template using {{model}}, {{arch}} and {{path}}, ending with "
                    f"{{path}}, such as {DEFAULT_LAYOUT!r} (the default) or '{{model}}/{{path}}'")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {expected}; got {value!r}")
        names = _PLACEHOLDER.findall(value)
        unknown = sorted({n for n in names if n not in LAYOUT_FIELDS})
        if unknown:
            why = (" ({version} is not offered: paths must not move when a pin moves; the version is in zoo.lock)"
                   if "version" in unknown else "")
            raise ConfigError(f"{where}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)} in "
                              f"{value!r}{why}; {expected}")
        if "{" in _PLACEHOLDER.sub("", value) or "}" in _PLACEHOLDER.sub("", value):
            raise ConfigError(f"{where}: unbalanced '{{' or '}}' in {value!r}; {expected}")
        if names.count("path") != 1 or not (value == "{path}" or value.endswith("/{path}")):
            raise ConfigError(f"{where}: {value!r} must end with {{path}} as its last component(s), once; {expected}")
        try:
            check_relpath(cls(value).apply(model="m", arch="a", path="p"), where=where)
        except InvalidPathError as exc:
            raise ConfigError(f"{where}: {value!r}: {exc}") from None
        return cls(value)

    def apply(self, *, model: str, arch: str, path: str) -> str:
        """The template filled in one pass: a value is never read as a placeholder itself."""
        values = {"model": model, "arch": arch, "path": path}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)

    @property
    def has_arch(self) -> bool:
        return "{arch}" in self.template

    def __str__(self) -> str:
        return self.template


@dataclass(frozen=True, slots=True)
class ModelRequirement:
    """A model as zoo.toml declares it: name, version spec, archs and the files wanted (globs)."""

    name: str
    spec: str
    archs: tuple[str, ...]
    files: tuple[str, ...] = ()  # glob patterns; empty = every file

    def wants(self, path: str) -> bool:
        return not self.files or any(fnmatch.fnmatchcase(path, g) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], g)
                                     for g in self.files)


@dataclass(frozen=True)
class Project:
    """A consumer project's zoo.toml (or [tool.zoostore]): store, archs, destination, models and layout."""

    root: Path  # directory holding zoo.toml / pyproject.toml
    config_path: Path
    store: str  # as declared (recorded in zoo.lock); see store_url
    archs: tuple[str, ...]
    dest: Path
    runtime: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, ModelRequirement] = field(default_factory=dict)
    store_options: Mapping[str, Any] = field(default_factory=dict)
    layout: Layout = field(default_factory=Layout)

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def store_url(self) -> str:
        """The store to open for this project: `$ZOOSTORE_STORE` when set, else `store` as
        declared (a relative path is relative to the config file); see find_store_url."""
        return find_store_url(project=self)


def _has_tool_table(pyproject: Path) -> bool:
    try:
        return "zoostore" in tomllib.loads(pyproject.read_text()).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False


def find_project(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest zoo.toml, or pyproject.toml with [tool.zoostore], from `start` upwards."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return d / CONFIG_NAME
        py = d / "pyproject.toml"
        if py.is_file() and _has_tool_table(py):
            return py
    return None


def resolve_store_url(store: str, root: Path) -> str:
    """A store location with a relative local path made absolute against `root` (`~` expanded);
    URLs are kept as they are."""
    if _URL.match(store):
        return store
    path = Path(store).expanduser()
    return str(path if path.is_absolute() else (root / path).resolve())


def find_store_url(explicit: str | os.PathLike[str] | None = None, *,
                   start: str | os.PathLike[str] | None = None, project: Project | None = None) -> str:
    """The store's URL; see `find_store`."""
    return find_store(explicit, start=start, project=project)[0]


def find_store(explicit: str | os.PathLike[str] | None = None, *,
               start: str | os.PathLike[str] | None = None, project: Project | None = None,
               ) -> tuple[str, dict[str, Any]]:
    """The store to read. One precedence for every entry point (the CLI, `zoostore.fetch`,
    `zoostore.sync`, `zoo://`), the order of uv and cargo (command line, environment, files):

    1. `explicit`: a `store=` argument or storage option, `--store`;
    2. `$ZOOSTORE_STORE`, so a CI job or a user points every tool at a mirror without editing
       files (for a project, zoo.lock still records the store zoo.toml declares);
    3. the `store` of `project` when given, else of the nearest zoo.toml (or pyproject.toml with
       `[tool.zoostore]`) at or above `start` (default: the working directory).

    Relative paths in 1 and 2 are relative to the working directory, in 3 to the config file's
    directory. Returns the URL and, in case 3, zoo.toml's `[store_options]` (a store named
    elsewhere is not the one those options describe). Raises UsageError saying how to name a
    store when none of the three gives one."""
    if explicit is not None and os.fspath(explicit).strip():
        return resolve_store_url(os.fspath(explicit).strip(), Path.cwd()), {}
    env = os.environ.get(STORE_ENV, "").strip()
    if env:
        return resolve_store_url(env, Path.cwd()), {}
    if project is not None:
        return resolve_store_url(project.store, project.root), dict(project.store_options)
    origin = Path(start) if start is not None else Path.cwd()
    config = find_project(origin)
    if config is not None:
        found = load_project(config)
        return resolve_store_url(found.store, found.root), dict(found.store_options)
    raise UsageError(
        f"no store given: name one with --store URL on the command line (from Python: fetch(store=...), "
        f"or fsspec.open(url, store='s3://bucket/zoo') for zoo://), set ${STORE_ENV}, or add "
        f"store = \"...\" to a {CONFIG_NAME} in {origin.resolve()} or a parent directory"
    )


def load_project(path: str | os.PathLike[str] | None = None) -> Project:
    """Load the project at `path` (a zoo.toml/pyproject.toml, or a directory to search up from)."""
    p = Path(path) if path is not None else None
    if p is None or p.is_dir():
        found = find_project(p)
        if found is None:
            raise UsageError(
                f"no {CONFIG_NAME} found in {(p or Path.cwd()).resolve()} or any parent directory "
                f"(nor a pyproject.toml with [tool.zoostore]); create one, e.g.:\n"
                f'  store = "s3://bucket/zoo"\n  [models]\n  yolo-v2-tiny = "^1.2"'
            )
        p = found
    where = str(p)
    try:
        doc = tomllib.loads(p.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {where}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from exc
    except RecursionError:
        raise ConfigError(f"{where}: not valid TOML (nested too deeply)") from None
    if p.name == "pyproject.toml":
        tool = doc.get("tool", {})
        table = tool.get("zoostore") if isinstance(tool, dict) else None
        where += " [tool.zoostore]"
        if not isinstance(table, dict):
            raise UsageError(f"{p} has no [tool.zoostore] table")
        doc = table
    return parse_project(doc, root=p.parent.resolve(), config_path=p, where=where)


def parse_project(doc: Mapping[str, Any], *, root: Path, config_path: Path, where: str) -> Project:
    unknown = set(doc) - {"store", "archs", "new_archs", "dest", "layout", "runtime", "models", "store_options"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected store, archs, new_archs, dest, "
                          "layout, runtime, models, store_options")
    new_archs = _new_archs(doc.get("new_archs"), f"{where}: new_archs")
    layout = Layout.parse(doc.get("layout", DEFAULT_LAYOUT), where=f"{where}: layout")
    store_options = doc.get("store_options", {})
    if not isinstance(store_options, dict):
        raise ConfigError(f'{where}: [store_options] must be a table, e.g. endpoint_url = "https://s3.example.org"')
    if store_options:
        from zoostore.storage.options import refuse_secrets

        refuse_secrets(store_options, f"{where}: [store_options]")
    # A project without `store` takes $ZOOSTORE_STORE as its declared store (recorded in zoo.lock).
    store = doc.get("store", os.environ.get(STORE_ENV))
    if not isinstance(store, str) or not store:
        raise ConfigError(f"{where}: key 'store' is required (a URL such as s3://bucket/zoo or a path), or set {STORE_ENV}")
    archs = _archs(doc.get("archs"), f"{where}: archs", new_archs) or (host_arch(),)
    dest = doc.get("dest", "models")
    if not isinstance(dest, str) or not dest:
        raise ConfigError(f"{where}: key 'dest' must be a directory path, got {dest!r}")
    runtime = doc.get("runtime", {})
    if not isinstance(runtime, dict) or not all(isinstance(v, str) for v in runtime.values()):
        raise ConfigError(f'{where}: [runtime] must map names to version strings, e.g. tvm = "0.27.0"')
    models: dict[str, ModelRequirement] = {}
    raw_models = doc.get("models", {})
    if not isinstance(raw_models, dict):
        raise ConfigError(f"{where}: [models] must be a table of MODEL = \"RANGE\"")
    for name, value in raw_models.items():
        mwhere = f"{where}: models.{name}"
        try:
            check_model_name(name)
        except ZooError as exc:
            raise ConfigError(f"{mwhere}: {exc}") from None
        if isinstance(value, str):
            models[name] = ModelRequirement(name, value, archs)
        elif isinstance(value, dict):
            extra = set(value) - {"version", "archs", "files"}
            if extra:
                raise ConfigError(f"{mwhere}: unknown key(s) {sorted(extra)}; expected version, archs, files")
            spec = value.get("version", "latest")
            files = value.get("files", [])
            if not isinstance(spec, str) or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise ConfigError(f'{mwhere}: expected {{ version = "^1.2", archs = ["x86_64"], files = ["*.so"] }}')
            models[name] = ModelRequirement(name, spec, _archs(value.get("archs"), f"{mwhere}.archs", new_archs) or archs, tuple(files))
        else:
            raise ConfigError(f'{mwhere}: expected a version range string or a table, got {value!r}')
    return Project(root=root, config_path=config_path, store=store, archs=archs,
                   dest=Path(os.path.normpath(root / dest)), runtime=dict(runtime), models=models,
                   store_options=dict(store_options), layout=layout)


def _archs(value: Any, where: str, new_archs: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """A list of arch names, normalised; names outside the known vocabulary only when the
    project lists them under `new_archs` (the zoo.toml side of `publish --new-arch`)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value) or not value:
        raise ConfigError(f'{where}: expected a non-empty list such as ["x86_64", "aarch64"], got {value!r}')
    hint = 'an architecture a store publishes with --new-arch is named in new_archs = ["NAME"] first'
    try:
        return tuple(dict.fromkeys(normalize_arch(a, allow_new=a.strip().lower() in new_archs, new_hint=hint)
                                   for a in value))
    except ZooError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _new_archs(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ConfigError(f'{where}: expected a list of architecture names such as ["sparc64"], got {value!r}')
    try:
        return frozenset(normalize_arch(a, allow_new=True) for a in value)
    except ZooError as exc:
        raise ConfigError(f"{where}: {exc}") from None
