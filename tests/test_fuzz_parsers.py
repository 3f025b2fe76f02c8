"""Every parser of something another party wrote raises only ZooError subclasses, for any input.

Hypothesis drives each parser with arbitrary text and bytes, and with mutations of a valid
document (a valid prefix, random values in valid places), a bounded number of examples with a
fixed seed so CI is reproducible. `ZOOSTORE_FUZZ_EXAMPLES=20000 ./dev.sh test tests/test_fuzz_parsers.py`
runs a longer search. Regressions found by fuzzing are pinned below as explicit examples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zoostore.core.digest import Digest
from zoostore.core.errors import ZooError

EXAMPLES = int(os.environ.get("ZOOSTORE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BLOB = Digest.parse("blake3:" + "cd" * 32)
GOLDEN = Path(__file__).parent / "golden" / "format1"

# TOML values of every type, nested a little: what a hostile document can put in any field.
toml_scalar = st.one_of(st.text(max_size=20), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                        st.booleans(), st.floats(allow_nan=False), st.datetimes())
toml_value = st.recursive(toml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


def must_be_zoo_error(parse: Callable[[], Any]) -> None:
    try:
        parse()
    except ZooError:
        pass


def _mutations(text: str) -> st.SearchStrategy[str]:
    """A valid document cut short, with a line replaced, or with a line appended."""
    lines = text.splitlines(keepends=True)
    cut = st.integers(0, len(text)).map(lambda i: text[:i])
    replaced = st.tuples(st.integers(0, max(0, len(lines) - 1)), st.text(max_size=60)).map(
        lambda t: "".join(lines[: t[0]] + [t[1] + "\n"] + lines[t[0] + 1:]))
    keyed = st.tuples(st.integers(0, max(0, len(lines) - 1)), toml_value).map(
        lambda t: "".join(lines[: t[0]]) + _retype(lines[t[0]] if lines else "", t[1]) + "".join(lines[t[0] + 1:]))
    return st.one_of(cut, replaced, keyed, st.text(max_size=300))


def _retype(line: str, value: Any) -> str:
    """`key = old` becomes `key = <value>` (value written as TOML)."""
    import tomli_w

    key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("[") else ""
    if not key or not key.replace("-", "").replace("_", "").replace('"', "").replace(".", "").isalnum():
        return line
    try:
        rendered = tomli_w.dumps({"v": value})
    except Exception:  # tomli-w refuses some values (e.g. datetimes with odd tzinfo): skip
        return line
    if not rendered.startswith("v = "):
        return line
    return f"{key} = {rendered[4:]}"


MANIFEST = next((GOLDEN / "store" / "manifests").glob("*.toml")).read_text(encoding="utf-8")
CONFIG = (GOLDEN / "store" / "zoostore.toml").read_text(encoding="utf-8")
LOCK = (GOLDEN / "zoo.lock").read_text(encoding="utf-8")
PROJECT = 'store = "s3://b/zoo"\narchs = ["x86_64"]\ndest = "models"\n[runtime]\ntvm = "0.27.0"\n[models]\nnet = "^1.2"\nother = { version = "latest", files = ["*.so"] }\n'


@FUZZ
@given(_mutations(MANIFEST))
def test_manifest(text: str) -> None:
    from zoostore.documents.manifest import Manifest

    must_be_zoo_error(lambda: Manifest.parse(text, where="manifests/m.toml"))


@FUZZ
@given(_mutations(CONFIG))
@example("format = 1\n[chunking]\nmin_size = 0\navg_size = 0\nmax_size = 0\n")
@example("format = 1\nchunking = 3\n")
@example("format = 1\n[chunking]\nmin_size = 1\navg_size = 2\nmax_size = 3\n[gc]\ngrace = \"99999999999999999999w\"\n")
def test_store_config(text: str) -> None:
    from zoostore.documents.store_config import StoreConfig

    must_be_zoo_error(lambda: StoreConfig.from_toml(text, where="zoostore.toml"))


@FUZZ
@given(_mutations(LOCK))
@example("format = 1\nstore = 'x'\nmodels = []\n")
def test_lockfile(text: str) -> None:
    from zoostore.documents.lockfile import Lock

    must_be_zoo_error(lambda: Lock.loads(text, where="zoo.lock"))


@FUZZ
@given(_mutations(PROJECT))
@example("store = 'x'\nruntime = 3\n")
@example("store = 'x'\n[models]\nnet = { version = 3 }\n")
@example("[tool]\nzoostore = 1\n")
def test_project(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from zoostore.documents.project import load_project

    d = tmp_path_factory.mktemp("p")
    (d / "zoo.toml").write_text(text, encoding="utf-8")
    must_be_zoo_error(lambda: load_project(d / "zoo.toml"))
    (d / "pyproject.toml").write_text(text, encoding="utf-8")
    must_be_zoo_error(lambda: load_project(d / "pyproject.toml"))


@FUZZ
@given(st.binary(max_size=300))
def test_project_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    from zoostore.documents.project import load_project

    d = tmp_path_factory.mktemp("p")
    (d / "zoo.toml").write_bytes(data)
    must_be_zoo_error(lambda: load_project(d / "zoo.toml"))


@FUZZ
@given(st.binary(max_size=400))
def test_recipe(data: bytes) -> None:
    from zoostore.storage.recipe import Recipe

    must_be_zoo_error(lambda: Recipe.decode(BLOB, data))


@FUZZ
@given(st.binary(max_size=400))
def test_pack_footer(data: bytes) -> None:
    from zoostore.storage.pack import footer_span, parse_footer

    must_be_zoo_error(lambda: parse_footer(data, where="packs/x"))
    must_be_zoo_error(lambda: footer_span(data, len(data) + 10, where="packs/x"))


@FUZZ
@given(st.binary(max_size=400))
def test_chunk_frame(data: bytes) -> None:
    from zoostore.storage import codec

    must_be_zoo_error(lambda: codec.decode(data, where="frame"))


@FUZZ
@given(_mutations('model = "m"\nsummary = "s"\nnetwork = "model.onnx"\n[[inputs]]\nname = "x"\nshape = [1, 3]\ndtype = "float32"\n'))
def test_model_toml(text: str) -> None:
    from zoostore.documents.descriptor import ModelDescriptor

    must_be_zoo_error(lambda: ModelDescriptor.parse(text))


DEFINITION = (Path(__file__).parent / "data" / "autoware" / "definition_template.yaml").read_text(encoding="utf-8")
BUILD_RECORD = '''format = 1
arch = "x86_64"
model = "mlp"
files = ["deploy_lib.so", "deploy_io.json"]
[source]
file = "model.onnx"
blake3 = "blake3:00"
[tvm]
version = "0.27.0"
ffi_version = "0.1.15"
target = "llvm"
executor = "relax.vm"
'''


@FUZZ
@given(st.one_of(st.integers(0, len(DEFINITION)).map(lambda i: DEFINITION[:i]), st.text(max_size=300),
                 st.tuples(st.integers(0, len(DEFINITION)), st.text(max_size=30)).map(
                     lambda t: DEFINITION[: t[0]] + t[1] + DEFINITION[t[0]:])))
def test_definition_yaml(text: str) -> None:
    from zoostore.documents import definition_yaml

    must_be_zoo_error(lambda: definition_yaml.parse(text))


@FUZZ
@given(_mutations(BUILD_RECORD))
def test_build_record(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from zoostore.documents.build_record import read_build_record

    d = tmp_path_factory.mktemp("build")
    (d / "build.toml").write_text(text, encoding="utf-8")
    must_be_zoo_error(lambda: read_build_record(d))


@FUZZ
@given(_mutations('format = 1\nmodels = ["a", "b"]\n'))
def test_model_index(text: str) -> None:
    from zoostore.documents.store_index import parse_index

    must_be_zoo_error(lambda: parse_index(text, where="index.toml"))


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=10).map(lambda v: __import__("json").dumps({"format": 1, "files": v}).encode())))
def test_state_file(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    """The state file in a destination is read, never trusted: any content is an empty or
    partial state (with what was ignored listed), never an exception."""
    from zoostore.ops.place import STATE_NAME, read_state

    d = tmp_path_factory.mktemp("dest")
    (d / STATE_NAME).write_bytes(data)
    state = read_state(d)
    assert all(isinstance(k, str) for k in state.files)
