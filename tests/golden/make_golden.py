"""Write the golden files of the current formats into tests/golden/format<N>/.

    python tests/golden/make_golden.py format1   # store format 1: three files, one version
    python tests/golden/make_golden.py format3   # store format 3: a version stored as edits
    python tests/golden/make_golden.py format4   # store format 4: code cut into larger chunks

Run once when a format is introduced or bumped; never regenerate an existing directory:
golden files prove that every released format stays readable forever.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent


def format3(out: Path) -> None:
    """A format-3 store (delta frames, recipes as edits): lib.so 1.0.0 whole, 2.0.0 a few bytes
    changed (delta frames; its recipe format 3, edits of 1.0.0's; its pack footer format 2)."""
    import random

    from zoostore.documents.store_config import Chunking, StoreConfig
    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    config = StoreConfig(chunking=Chunking(256, 1024, 4096), pack_target_size=16 * 1024, delta=True)
    zoo, _ = init_store(out / "store", config=config)
    rng = random.Random(3)
    v1 = bytes(rng.getrandbits(8) for _ in range(60000))
    v2 = bytearray(v1)
    for _ in range(6):
        v2[rng.randrange(len(v2))] ^= 0x5A
    for version, data in (("1.0.0", v1), ("2.0.0", bytes(v2))):
        src = out / "expected" / version
        src.mkdir(parents=True)
        (src / "lib.so").write_bytes(data)
        publish(zoo, "golden", version, [src], arch="x86_64", check=False)


def format4(out: Path) -> None:
    """A format-4 store ([chunking.code]): lib.so (starts like ELF: code chunks up to 32 KiB,
    four times the other files' largest) and weights.bin (float-like: chunks up to 4 KiB)."""
    import random
    import struct

    from zoostore.documents.store_config import Chunking, StoreConfig
    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    config = StoreConfig(chunking=Chunking(256, 1024, 4096, code=(2048, 8192, 32768)),
                         pack_target_size=64 * 1024, delta=True)
    zoo, _ = init_store(out / "store", config=config)
    rng = random.Random(4)
    words = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(4, 24))) for _ in range(300)]
    src = out / "expected"
    src.mkdir(parents=True)
    elf = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 3, 62) + bytes(44)  # x86_64 shared object
    (src / "lib.so").write_bytes(elf + b"".join(rng.choice(words) for _ in range(12000)))
    (src / "weights.bin").write_bytes(b"".join(struct.pack("<f", rng.gauss(0, 0.05)) for _ in range(30000)))
    publish(zoo, "golden", "1.0.0", [src], arch="x86_64", check=False)


def main() -> None:
    from zoostore.documents.store_config import StoreConfig
    from zoostore.documents.lockfile import Lock, LockedFile, LockedModel
    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    out = HERE / sys.argv[1]
    if out.exists():
        raise SystemExit(f"{out} exists: golden files are never regenerated")
    if sys.argv[1] in ("format3", "format4"):
        return format3(out) if sys.argv[1] == "format3" else format4(out)
    work = out / "src"
    work.mkdir(parents=True)
    # Compressible text, float-like bytes, and incompressible bytes: all three codecs appear.
    (work / "notes.txt").write_text("zoostore golden file\n" * 4000)
    import random, struct
    rng = random.Random(7)
    (work / "weights.bin").write_bytes(b"".join(struct.pack("<f", rng.gauss(0, 0.05)) for _ in range(40000)))
    (work / "noise.bin").write_bytes(bytes(rng.getrandbits(8) for _ in range(70000)))
    config = StoreConfig(pack_target_size=64 * 1024)
    zoo, _ = init_store(out / "store", config=config)
    result = publish(zoo, "golden", "1.0.0", [work], arch="x86_64", tags=["stable"], meta={"acc@1": 0.5},
                     requires={"tvm": ">=0.27.0 <0.28.0"}, check=False)
    files = tuple(sorted(LockedFile("x86_64", p, e.blob, e.size) for p, e in result.files.items()))
    lock = Lock(store="../store", models={"golden": LockedModel("golden", "^1.0", ("x86_64",), (), "1.0.0", files)},
                runtime={"tvm": "0.27.0"})
    (out / "zoo.lock").write_text(lock.dumps())
    shutil.copytree(work, out / "expected")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
