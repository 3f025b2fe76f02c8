"""Version and arch identity: one version, one content, forever (issue 12)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from zoostore.cli import main as cli
from zoostore.core.errors import FormatError, ImmutableError, UsageError
from zoostore.core.machine import machines
from zoostore.core.names import normalize_arch
from zoostore.documents.manifest import Manifest, manifest_key
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.repository import init_store

GOLDEN_MANIFESTS = Path(__file__).parent / "golden" / "format1" / "store" / "manifests"


def _files(d: Path, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"text": text}))
    return d


@pytest.fixture
def zoo(tmp_path: Path):  # type: ignore[no-untyped-def]
    z, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024))
    return z


# ------------------------------------------------------------------ canonical versions
@pytest.mark.parametrize("given", ["v1.2.0", "=1.2.0", "=v1.2.0"])
def test_publish_stores_the_canonical_version(zoo, tmp_path: Path, given: str) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", given, [_files(tmp_path / "a", "a")])
    assert list(zoo.manifest("m").versions) == ["1.2.0"]


@pytest.mark.parametrize("first,second", [("1.2.0", "v1.2.0"), ("1.2.0+b1", "1.2.0+b2"),
                                          ("1.2.0", "1.2.0+b1"), ("1.2.0+20220504", "=1.2.0")])
def test_equal_precedence_with_other_bytes_is_refused_naming_both(zoo, tmp_path: Path, first: str, second: str) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", first, [_files(tmp_path / "a", "a")])
    with pytest.raises(ImmutableError) as exc:
        publish(zoo, "m", second, [_files(tmp_path / "b", "b")])
    stored = str(first).lstrip("=v")
    assert stored in str(exc.value) and second in str(exc.value)
    assert list(zoo.manifest("m").versions) == [stored]


def test_equal_precedence_with_identical_bytes_is_idempotent_and_keeps_first_build(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = _files(tmp_path / "a", "a")
    publish(zoo, "m", "1.2.0+20220504", [d])
    publish(zoo, "m", "1.2.0+20220601", [d])
    publish(zoo, "m", "v1.2.0", [d])
    assert list(zoo.manifest("m").versions) == ["1.2.0+20220504"]


# ------------------------------------------------------------------ tombstones
def test_version_removed_by_gc_is_never_reused_for_other_bytes(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = _files(tmp_path / "a", "a"), _files(tmp_path / "b", "b")
    publish(zoo, "m", "1.0.0", [a])
    publish(zoo, "m", "1.1.0", [a])
    zoo.update_manifest("m", lambda m: m.drop_versions({"1.0.0"}))  # what gc does
    m = zoo.manifest("m")
    assert "1.0.0" not in m.versions and "1.0.0" in m.removed
    with pytest.raises(ImmutableError, match="removed by gc"):
        publish(zoo, "m", "v1.0.0+again", [b])
    publish(zoo, "m", "1.0.0", [a])  # the same bytes again may come back
    assert "1.0.0" in zoo.manifest("m").versions


def test_tombstones_round_trip_and_format_stays_1(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [_files(tmp_path / "a", "a")])
    m = zoo.manifest("m").drop_versions({"1.0.0"})
    text = m.to_toml()
    assert 'format = 1' in text and '[removed."1.0.0"]' in text
    again = Manifest.parse(text, where="x")
    assert again.removed == m.removed and again.to_toml() == text


def test_bad_tombstone_is_a_format_error() -> None:
    text = 'format = 1\nmodel = "m"\n[removed."1.0.0"]\nblobs = 3\n'
    with pytest.raises(FormatError, match='removed."1.0.0"'):
        Manifest.parse(text, where="m.toml")


def test_golden_format1_manifests_still_parse_and_round_trip_byte_for_byte() -> None:
    paths = sorted(GOLDEN_MANIFESTS.glob("*.toml"))
    assert paths
    for p in paths:
        text = p.read_text()
        m = Manifest.parse(text, where=str(p))
        assert m.removed == {}
        assert m.to_toml() == text


# ------------------------------------------------------------------ arch vocabulary
@pytest.mark.parametrize("alias,name", [("amd64", "x86_64"), ("x64", "x86_64"), ("arm64", "aarch64"),
                                        ("armhf", "armv7l"), ("ppc64el", "ppc64le"), ("i386", "i686"),
                                        ("s390x", "s390x"), ("noarch", "any")])
def test_arch_aliases_normalise(alias: str, name: str) -> None:
    assert normalize_arch(alias) == name


@pytest.mark.parametrize("bad", ["x86", "arm", "amd46"])
def test_unknown_arch_is_refused_with_the_list(bad: str) -> None:
    with pytest.raises(UsageError) as exc:
        normalize_arch(bad)
    assert "x86_64" in str(exc.value) and "riscv64" in str(exc.value) and "--new-arch" in str(exc.value)
    assert normalize_arch(bad, allow_new=True) == bad


def test_publish_refuses_unknown_arch_unless_new_arch(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = _files(tmp_path / "a", "a")
    with pytest.raises(UsageError, match="unknown architecture 'x86'"):
        publish(zoo, "m", "1.0.0", [d], arch="x86")
    assert cli(["publish", str(zoo.url), "m", "1.0.0", str(d), "--arch", "x86", "-q"]) == 2
    assert cli(["publish", str(zoo.url), "m", "1.0.0", str(d), "--arch", "e2k", "--new-arch", "-q"]) == 0
    publish(zoo, "m", "1.0.0", [d], arch="amd64")
    assert zoo.manifest("m").versions["1.0.0"].archs == ["e2k", "x86_64"]


def test_two_keys_of_one_arch_in_a_manifest_version_are_refused() -> None:
    entry = '{ blob = "blake3:' + "0" * 64 + '", size = 1 }'
    text = (f'format = 1\nmodel = "m"\n[versions."1.0.0"]\npublished = 2026-01-01T00:00:00Z\n'
            f'[versions."1.0.0".files.amd64]\n"a.so" = {entry}\n'
            f'[versions."1.0.0".files.x86_64]\n"b.so" = {entry}\n')
    with pytest.raises(FormatError, match="two keys name the architecture x86_64"):
        Manifest.parse(text, where="m.toml")


# ------------------------------------------------------------------ binary machines
def elf(machine: int, *, is64: bool = True, little: bool = True) -> bytes:
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1]) + bytes(9)
    order = "<" if little else ">"
    return ident + struct.pack(order + "HH", 3, machine) + bytes(44)  # e_type ET_DYN, e_machine


def macho(cputype: int) -> bytes:
    return b"\xcf\xfa\xed\xfe" + struct.pack("<II", cputype, 0) + bytes(20)


def macho_fat(*cputypes: int) -> bytes:
    arches = b"".join(struct.pack(">IIIII", c, 0, 4096, 10, 12) for c in cputypes)
    return b"\xca\xfe\xba\xbe" + struct.pack(">I", len(cputypes)) + arches


def pe(machine: int) -> bytes:
    dos = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x80)
    return dos + bytes(0x80 - len(dos)) + b"PE\0\0" + struct.pack("<H", machine) + bytes(18)


@pytest.mark.parametrize("head,expected", [
    (elf(62), {"x86_64"}), (elf(183), {"aarch64"}), (elf(40, is64=False), {"armv7l", "armv6l"}),
    (elf(243), {"riscv64"}), (elf(21), {"ppc64le"}), (elf(22, little=False), {"s390x"}),
    (elf(3, is64=False), {"i686"}), (elf(9999), {"unknown:ELF:9999"}),
    (macho(0x01000007), {"x86_64"}), (macho(0x0100000C), {"aarch64"}),
    (macho_fat(0x01000007, 0x0100000C), {"x86_64", "aarch64"}),
    (pe(0x8664), {"x86_64"}), (pe(0xAA64), {"aarch64"}), (pe(0x14C), {"i686"}),
])
def test_machine_is_read_from_the_header(head: bytes, expected: set[str]) -> None:
    assert machines(head) == expected


@pytest.mark.parametrize("head", [b"", b"hello", b"\x7fEL", b"\xca\xfe\xba\xbe\x00\x00\x00\x34",  # Java class
                                  b"MZ" + bytes(100), b"\x08\x01onnx"])
def test_non_binaries_have_no_machine(head: bytes) -> None:
    assert machines(head) is None


@pytest.mark.parametrize("head,name", [(elf(183), "lib.so"), (macho(0x0100000C), "lib.dylib"), (pe(0xAA64), "lib.dll")])
def test_publish_refuses_a_binary_of_another_arch_naming_file_and_both(zoo, tmp_path: Path, head: bytes, name: str) -> None:  # type: ignore[no-untyped-def]
    d = _files(tmp_path / "a", "a")
    (d / name).write_bytes(head + bytes(1000))
    with pytest.raises(UsageError) as exc:
        publish(zoo, "m", "1.0.0", [d], arch="x86_64")
    msg = str(exc.value)
    assert name in msg and "aarch64" in msg and "'x86_64'" in msg and "--arch aarch64" in msg
    with pytest.raises(UsageError, match="--arch aarch64"):
        publish(zoo, "m", "1.0.0", [d])  # `any` is not a native binary's arch either
    publish(zoo, "m", "1.0.0", [d], arch="arm64")
    assert zoo.manifest("m").versions["1.0.0"].archs == ["aarch64"]


def test_publish_refuses_build_record_of_another_arch(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = _files(tmp_path / "aarch64", "a")
    (d / "build.toml").write_text(
        'format = 1\narch = "aarch64"\nmodel = "m"\nfiles = []\n'
        '[tvm]\nversion = "0.27.0"\nffi_version = "0.1"\ntarget = "llvm"\n'
        '[compiler]\ncommand = "aarch64-linux-gnu-g++"\n[source]\nfile = "m.onnx"\nblake3 = "x"\n')
    with pytest.raises(UsageError, match="says arch = 'aarch64', but --arch is 'x86_64'"):
        publish(zoo, "m", "1.0.0", [d], arch="x86_64")


def test_real_cross_compiled_shared_object_is_refused_as_x86_64(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gcc = shutil.which("aarch64-linux-gnu-gcc")
    if gcc is None:
        pytest.skip("aarch64-linux-gnu-gcc is not installed (apt-get install gcc-aarch64-linux-gnu)")
    d = tmp_path / "out"
    d.mkdir()
    (tmp_path / "f.c").write_text("int answer(void) { return 42; }\n")
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(d / "deploy_lib.so"), str(tmp_path / "f.c")], check=True)
    assert machines((d / "deploy_lib.so").read_bytes()[:4096]) == {"aarch64"}
    with pytest.raises(UsageError, match=r"deploy_lib.so .* is an ELF binary for aarch64, but --arch is 'x86_64'"):
        publish(zoo, "m", "1.0.0", [d], arch="x86_64")
    publish(zoo, "m", "1.0.0", [d], arch="aarch64")


# ------------------------------------------------------------------ per-version metadata
def test_meta_is_per_version_and_identical_files_with_other_meta_are_refused(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    d = _files(tmp_path / "a", "a")
    publish(zoo, "m", "1.0.0", [d], meta={"dataset": "coco17"})
    publish(zoo, "m", "1.1.0", [_files(tmp_path / "b", "b")], meta={"dataset": "kitti"})
    m = zoo.manifest("m")
    assert m.versions["1.0.0"].meta == {"dataset": "coco17"} and m.versions["1.1.0"].meta == {"dataset": "kitti"}
    publish(zoo, "m", "1.0.0", [d], meta={"dataset": "coco17"})  # identical: idempotent
    with pytest.raises(ImmutableError, match="zoostore meta STORE m 1.0.0 dataset='voc'"):
        publish(zoo, "m", "1.0.0", [d], meta={"dataset": "voc"})
    assert cli(["meta", str(zoo.url), "m", "v1.0.0", "dataset=voc", "map=0.71"]) == 0
    assert zoo.manifest("m").versions["1.0.0"].meta == {"dataset": "voc", "map": 0.71}
    assert cli(["meta", str(zoo.url), "m", "1.0.0", "map="]) == 0
    assert zoo.manifest("m").versions["1.0.0"].meta == {"dataset": "voc"}
    assert cli(["meta", str(zoo.url), "m", "9.9.9", "a=1"]) == 6  # not found, as `ls` of it


# ------------------------------------------------------------------ resolve
def test_resolve_non_string_is_a_clean_error_and_empty_range_exits_6(zoo, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from zoostore.documents.resolve import select, select_versions
    publish(zoo, "m", "1.2.0+20220504", [_files(tmp_path / "a", "a")])
    m = zoo.manifest("m")
    for bad in (3, 1.2, ["1.2.0"]):
        with pytest.raises(UsageError, match="expected a string"):
            select(m, bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="expected a string"):
            select_versions(m, bad)  # type: ignore[arg-type]
    assert select(m, "v1.2.0")[0].version == "1.2.0+20220504"
    assert select_versions(m, "1.2.0") == ["1.2.0+20220504"]
    capsys.readouterr()
    assert cli(["ls", str(zoo.url), "m@^2"]) == 6
    assert "1.2.0+20220504" in capsys.readouterr().err


# ------------------------------------------------------------------ lock-time explanations
def test_select_says_why_a_newer_matching_version_was_skipped(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoostore.documents.resolve import select
    publish(zoo, "m", "1.0.0", [_files(tmp_path / "a", "a")], arch="x86_64")
    publish(zoo, "m", "1.1.0", [_files(tmp_path / "b", "b")], arch="x86_64", requires={"tvm": ">=0.30.0"})
    publish(zoo, "m", "1.2.0", [_files(tmp_path / "c", "c")], arch="aarch64")
    release, warnings = select(zoo.manifest("m"), "^1.0", arch="x86_64", runtime={"tvm": "0.27.0"})
    assert release.version == "1.0.0"
    text = "\n".join(warnings)
    assert "newer 1.1.0" in text and "requires tvm" in text
    assert "newer 1.2.0" in text and "no files for x86_64" in text
