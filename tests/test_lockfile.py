"""zoo.lock: written with a TOML library (any Unicode reads back), read strictly (only
ConfigError, naming the file and field, for any input), and the format-1 layout kept."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoostore.core.digest import Digest
from zoostore.core.errors import ConfigError, NewerFormatError, ZooError
from zoostore.documents.lockfile import Lock, LockedFile, LockedModel

GOLDEN = Path(__file__).parent / "golden" / "format1" / "zoo.lock"
BLOB = Digest.parse("blake3:" + "ab" * 32)

# Path parts as users name files: any Unicode except what a relative POSIX path refuses.
part = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"), min_size=1,
               max_size=20).filter(lambda s: s not in (".", "..") and s.strip() == s and ":" not in s)


def lock_with(paths: list[str], *, store: str = "s3://b/zoo") -> Lock:
    files = tuple(sorted(LockedFile("x86_64", p, BLOB, i) for i, p in enumerate(paths)))
    model = LockedModel("net", "^1", ("x86_64",), (), "1.0.0", files)
    return Lock(store=store, models={"net": model}, runtime={"tvm": "0.27.0"})


@settings(max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(part, min_size=1, max_size=3).map("/".join), min_size=1, max_size=5, unique=True),
       st.text(max_size=30))
def test_any_unicode_round_trips(paths: list[str], store: str) -> None:
    try:
        lock = lock_with(paths, store=store)
        text = lock.dumps()
    except ZooError:
        return  # a path the path rules refuse (checked elsewhere) never reaches a lock
    tomllib.loads(text)  # valid TOML
    assert Lock.loads(text, where="zoo.lock") == lock


def test_emoji_file_name_is_valid_toml(tmp_path: Path) -> None:
    lock = lock_with(["weights-\U0001F600.bin"])
    lock.write(tmp_path / "zoo.lock")
    assert Lock.read(tmp_path / "zoo.lock") == lock
    assert "\U0001F600" in (tmp_path / "zoo.lock").read_text(encoding="utf-8")


def test_golden_lockfile_is_written_byte_for_byte_the_same() -> None:
    text = GOLDEN.read_text(encoding="utf-8")
    assert Lock.loads(text, where="zoo.lock").dumps() == text


def test_write_leaves_no_temp_file_and_reports_unchanged(tmp_path: Path) -> None:
    lock = lock_with(["a.bin"])
    assert lock.write(tmp_path / "zoo.lock") is True
    assert lock.write(tmp_path / "zoo.lock") is False
    assert [p.name for p in tmp_path.iterdir()] == ["zoo.lock"]


GOOD = GOLDEN.read_text(encoding="utf-8")


@pytest.mark.parametrize("text, field", [
    (GOOD.replace("format = 1", "format = 1\nmodels = []", 1), "models"),
    (re.sub(r"size = \d+", 'size = "abc"', GOOD, count=1), "size"),
    (re.sub(r"size = \d+", "size = true", GOOD, count=1), "size"),
    (re.sub(r"size = \d+", "size = -5", GOOD, count=1), "size"),
    (re.sub(r"size = \d+", f"size = {2**63}", GOOD, count=1), "TOML|size"),
    (re.sub(r'spec = "[^"]*"', "spec = 3", GOOD, count=1), "spec"),
    (GOOD.replace("files = [", "files = 7\nx = [", 1), "files"),
    ("format = 1\n" + "a = [" * 2000 + "]" * 2000, "TOML"),
    ("format = 1\nstore = 'x'\n[models.'../../etc']\nspec='1'\nversion='1'\nfiles=[]\n", "model name"),
    ("store = 'x'\n", "format"),
])
def test_malformed_lock_is_a_config_error_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Lock.loads(text, where="zoo.lock")


def test_non_utf8_lock_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "zoo.lock").write_bytes(b"format = 1\nstore = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Lock.read(tmp_path / "zoo.lock")


def test_newer_lock_asks_to_upgrade() -> None:
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        Lock.loads("format = 99\n", where="zoo.lock")


@settings(max_examples=300, derandomize=True)
@given(st.text(max_size=400))
def test_fuzz_loads_raises_only_zoo_errors(text: str) -> None:
    for candidate in (text, "format = 1\n" + text, GOOD[: len(GOOD) // 2] + text):
        try:
            Lock.loads(candidate, where="zoo.lock")
        except ZooError:
            pass


# -- the fast reader: the same document as tomllib, or none (then tomllib reads it) --------------
def _fast_or_toml(text: str) -> None:
    from zoostore.documents.lockfile import _fast_document

    fast = _fast_document(text)
    if fast is not None:
        assert fast == tomllib.loads(text)


@settings(max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(part, min_size=1, max_size=3).map("/".join), min_size=1, max_size=5, unique=True),
       st.text(max_size=30))
def test_fast_reader_reads_what_dumps_writes_as_tomllib_does(paths: list[str], store: str) -> None:
    from zoostore.documents.lockfile import _fast_document

    try:
        text = lock_with(paths, store=store).dumps()
    except ZooError:
        return
    fast = _fast_document(text)
    if not any(c in text for c in '\\\t'):   # no escaped string: the fast reader takes it
        assert fast is not None
    _fast_or_toml(text)


def test_fast_reader_takes_the_golden_lock_and_a_lock_without_models() -> None:
    from zoostore.documents.lockfile import _fast_document

    assert _fast_document(GOOD) == tomllib.loads(GOOD)
    empty = Lock(store="s3://b/zoo").dumps()
    assert _fast_document(empty) == tomllib.loads(empty) == {"format": 1, "store": "s3://b/zoo", "runtime": {}}


@pytest.mark.parametrize("text", [
    GOOD.replace('[models."golden"]', '[models."golden"]\n\n[models."golden"]', 1),    # a table twice
    GOOD.replace('runtime = { "tvm" = "0.27.0" }', 'runtime = { "tvm" = "1", "tvm" = "2" }'),
    GOOD.replace("size = 70000", "size = 07"),                                          # not a TOML integer
    GOOD.replace('path = "noise.bin"', 'path = "noi\\u0073e.bin"'),                     # an escape
    GOOD.replace('path = "noise.bin"', 'path = "noise.bin" '),
    GOOD.replace("]\n", "", 1),                                                         # files never closed
    GOOD.replace("\n", "\r\n"),
    GOOD.replace("# This file", "#\x01 This file"),
    GOOD + "extra = 1\n",
    GOOD.replace('spec = "^1.0"\n', ""),
])
def test_fast_reader_leaves_anything_else_to_tomllib(text: str) -> None:
    from zoostore.documents.lockfile import _fast_document

    _fast_or_toml(text)
    assert _fast_document(text) is None


@settings(max_examples=300, derandomize=True)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 8), st.text(max_size=4))
def test_fast_reader_never_disagrees_with_tomllib_on_an_edited_lock(at: int, cut: int, insert: str) -> None:
    text = GOOD[:at] + insert + GOOD[at + cut:]
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        from zoostore.documents.lockfile import _fast_document

        assert _fast_document(text) is None
        return
    _fast_or_toml(text)
