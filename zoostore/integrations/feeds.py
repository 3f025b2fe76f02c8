"""Generated inputs of the declared shapes: what `check`'s smoke run feeds onnxruntime and
what `build` binds the Relax frontend's shapes to (and compares TVM with onnxruntime on).

Each dimension is the graph's fixed size, else the descriptor's (a declared size, or a name
bound by `dims`), else 1 (also for a declared -1, Autoware's dynamic size). Floats come from a
seeded normal RNG; integers and booleans are zero so that token ids and indices stay in range.
numpy is imported inside `smoke_inputs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zoostore.core.errors import MissingDependencyError, UsageError
from zoostore.documents.descriptor import ModelDescriptor, TensorSpec, bind_dim


def concrete_input_shapes(
    inputs: Iterable[TensorSpec], descriptor: ModelDescriptor | None
) -> dict[str, tuple[int, ...]]:
    """Each input's shape with every dimension a number: the graph's fixed sizes, else the
    descriptor's (a declared size, or a name bound by `dims`), else 1 (also for a declared -1)."""
    dims = descriptor.dims if descriptor else {}
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        declared = descriptor.input(spec.name) if descriptor else None
        if declared is not None and len(declared.shape) != len(spec.shape) and spec.shape:
            declared = None  # a rank mismatch is a `nodes` problem; trust the graph
        if not spec.shape and declared is not None:
            shapes[spec.name] = declared.concrete_shape(dims)
            continue
        out = []
        for i, have in enumerate(spec.shape):
            want = declared.shape[i] if declared is not None else have
            if isinstance(have, int):
                out.append(have)  # the graph's fixed size wins; a mismatch is a `nodes` problem
                continue
            size = bind_dim(want, dims)
            out.append(size if size is not None else int(dims.get(have, 1)))
        shapes[spec.name] = tuple(out)
    return shapes


def smoke_inputs(
    inputs: Iterable[TensorSpec], descriptor: ModelDescriptor | None, *, seed: int = 0
) -> dict[str, Any]:
    """Generated feeds for the smoke run (and the TVM comparison): floats from a seeded
    normal RNG, integers and booleans zero, so token ids and indices stay in range."""
    try:
        import numpy as np
    except ImportError as exc:
        raise MissingDependencyError(
            f"generating inputs needs numpy, which is not installed ({exc}): pip install 'zoostore[onnx]'"
        ) from exc
    rng = np.random.default_rng(seed)
    specs = list(inputs)
    shapes = concrete_input_shapes(specs, descriptor)
    feeds: dict[str, Any] = {}
    for spec in specs:
        shape = shapes[spec.name]
        if spec.dtype in ("float16", "float32", "float64"):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool" or spec.dtype.startswith(("int", "uint")):
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
        else:
            raise UsageError(
                f"input {spec.name!r} has element type {spec.dtype}, for which the smoke run "
                f"cannot generate values"
            )
    return feeds
