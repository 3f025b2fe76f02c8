"""The ONNX check that publish runs, and the metadata it leaves on the version.

`publish_checker()` is the checker `zoostore publish` and `zoostore.publish` pass to
`plan_publish`: it runs `zoostore check` on the `.onnx` files (refusing the publish when one
fails) and returns the version's metadata, merged under any `--meta` the maintainer gives:

    [versions."1.2.0".meta.onnx."model.onnx"]
    ir_version = 8
    opsets = { "ai.onnx" = 17 }
    producer = "pytorch 2.3.0"
    inputs = [{ name = "x", shape = ["batch", 16], dtype = "float32" }]
    outputs = [{ name = "probs", shape = ["batch", 4], dtype = "float32" }]
    test_data = { passed = 2, found = 2 }          # only when test_data_set_N folders exist

Keys are the files' paths relative to their common folder. Nothing here depends on time or
the machine, so publishing the same files twice gives the same metadata.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoostore.core.progress import Progress
    from zoostore.integrations.onnx_check import CheckReport, OpsetPolicy


def version_meta(reports: Sequence[CheckReport]) -> dict[str, Any]:
    """`{"onnx": {relative path: {...}}}` for the reports of one publish (empty without any)."""
    if not reports:
        return {}
    paths = [r.path.resolve() for r in reports]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    out: dict[str, Any] = {}
    for path, r in zip(paths, reports, strict=True):
        entry: dict[str, Any] = {
            "ir_version": r.ir_version, "opsets": dict(r.opsets), "producer": r.producer,
            "inputs": [n.to_dict() for n in r.inputs], "outputs": [n.to_dict() for n in r.outputs],
        }
        if r.data_sets[1]:
            entry["test_data"] = {"passed": r.data_sets[0], "found": r.data_sets[1]}
        out[path.relative_to(root).as_posix()] = {k: v for k, v in entry.items() if v not in (None, "")}
    return {"onnx": out}


def publish_checker(progress: Progress | None = None, *, policy: OpsetPolicy | None = None,
                    ) -> Callable[[Sequence[Path]], dict[str, Any] | None]:
    """The ONNX check of `.onnx` files among those published; onnx is imported only when
    there is one. Returns the version metadata above, or None without ONNX files."""
    def check(files: Sequence[Path]) -> dict[str, Any] | None:
        if not any(f.suffix.lower() == ".onnx" for f in files):
            return None
        from zoostore.integrations.onnx_check import require_valid

        return version_meta(require_valid(files, policy=policy, progress=progress))

    return check
