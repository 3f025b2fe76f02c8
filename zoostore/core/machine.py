"""The machine a native binary is built for, read from its header bytes: ELF `e_machine`,
Mach-O `cputype` (thin or universal) and PE/COFF `Machine`.

No I/O: callers pass the first `HEADER_BYTES` of a file. Publish uses this to refuse an
aarch64 library published as x86_64 (issue 12). Names are those of `core.names.KNOWN_ARCHS`.
"""

from __future__ import annotations

import struct

#: How much of a file `machines` needs: ELF and Mach-O headers are at the start; a PE header
#: is at `e_lfanew`, which linkers put within the first few hundred bytes.
HEADER_BYTES = 4096

# ELF e_machine (System V ABI, elf.h) -> arch; some depend on class (32/64) and byte order.
_EM_386, _EM_ARM, _EM_X86_64, _EM_AARCH64 = 3, 40, 62, 183
_EM_MIPS, _EM_PPC64, _EM_S390, _EM_RISCV, _EM_LOONGARCH = 8, 21, 22, 243, 258

# Mach-O cputype (mach/machine.h).
_CPU_ABI64 = 0x01000000
_MACHO_CPU = {7: "i686", 7 | _CPU_ABI64: "x86_64", 12: "armv7l", 12 | _CPU_ABI64: "aarch64",
              18 | _CPU_ABI64: "ppc64"}
_MACHO_THIN = {b"\xce\xfa\xed\xfe": "<", b"\xcf\xfa\xed\xfe": "<",
               b"\xfe\xed\xfa\xce": ">", b"\xfe\xed\xfa\xcf": ">"}
_MACHO_FAT = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")  # fat_header is big-endian

# PE/COFF Machine (Microsoft PE format).
_PE_MACHINE = {0x8664: "x86_64", 0xAA64: "aarch64", 0x14C: "i686", 0x1C4: "armv7l",
               0x5064: "riscv64"}


def machines(head: bytes) -> frozenset[str] | None:
    """The arches a binary with these first bytes runs on (several for a universal Mach-O
    file; an unrecognised machine number gives `{"unknown:<format>:<number>"}`), or None when
    the bytes are not an ELF, Mach-O or PE header (data, text, ONNX, ...)."""
    if head[:4] == b"\x7fELF":
        return _elf(head)
    if head[:4] in _MACHO_THIN:
        return _macho_thin(head)
    if head[:4] in _MACHO_FAT:
        return _macho_fat(head)
    if head[:2] == b"MZ":
        return _pe(head)
    return None


def describe(head: bytes) -> str:
    """`ELF`, `Mach-O` or `PE`: the format name for messages."""
    if head[:4] == b"\x7fELF":
        return "ELF"
    if head[:2] == b"MZ":
        return "PE"
    return "Mach-O"


def _elf(head: bytes) -> frozenset[str] | None:
    if len(head) < 20 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    is64, little = head[4] == 2, head[5] == 1
    (em,) = struct.unpack_from("<H" if little else ">H", head, 18)
    arch = {
        _EM_386: "i686", _EM_X86_64: "x86_64", _EM_AARCH64: "aarch64",
        _EM_ARM: "armv7l",  # ELF cannot tell ARMv6 from ARMv7; armv6l is accepted too
        _EM_RISCV: "riscv64" if is64 else "riscv32",
        _EM_PPC64: "ppc64le" if little else "ppc64",
        _EM_S390: "s390x" if is64 else "s390",
        _EM_LOONGARCH: "loongarch64",
        _EM_MIPS: ("mips64el" if is64 else "mipsel") if little else ("mips64" if is64 else "mips"),
    }.get(em)
    if arch is None:
        return frozenset({f"unknown:ELF:{em}"})
    return frozenset({arch, "armv6l"} if em == _EM_ARM else {arch})


def _macho_thin(head: bytes) -> frozenset[str] | None:
    if len(head) < 8:
        return None
    (cpu,) = struct.unpack_from(_MACHO_THIN[head[:4]] + "I", head, 4)
    return frozenset({_MACHO_CPU.get(cpu, f"unknown:Mach-O:{cpu:#x}")})


def _macho_fat(head: bytes) -> frozenset[str] | None:
    if len(head) < 8:
        return None
    (n,) = struct.unpack_from(">I", head, 4)
    # A Java class file shares the magic 0xcafebabe; there the next word is its version (>= 45).
    if n == 0 or n >= 45:
        return None
    size = 20 if head[:4] == _MACHO_FAT[0] else 32
    out = set()
    for i in range(n):
        off = 8 + i * size
        if off + 4 > len(head):
            break
        (cpu,) = struct.unpack_from(">I", head, off)
        out.add(_MACHO_CPU.get(cpu, f"unknown:Mach-O:{cpu:#x}"))
    return frozenset(out) or None


def _pe(head: bytes) -> frozenset[str] | None:
    if len(head) < 0x40:
        return None
    (lfanew,) = struct.unpack_from("<I", head, 0x3C)
    if lfanew + 6 > len(head) or head[lfanew:lfanew + 4] != b"PE\0\0":
        return None
    (machine,) = struct.unpack_from("<H", head, lfanew + 4)
    return frozenset({_PE_MACHINE.get(machine, f"unknown:PE:{machine:#x}")})
