"""zoostore: a content-addressed artifact store for model zoos.

    import zoostore
    zoo = zoostore.open_store("s3://bucket/zoo")      # or a local path
    zoo.models(); zoo.manifest("yolo"); zoo.resolve("yolo", "^1.2", arch="x86_64")
    path = zoostore.fetch("yolo", "^1.2", "deploy_lib.so", arch="x86_64", store=...)
    zoostore.sync()                                    # like `zoostore sync` in this project

Attributes are imported on first use, so `import zoostore` stays fast and loads neither the
storage stack nor onnx nor tvm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoostore.core.version import __version__

_LAZY = {
    "open_store": "zoostore.repository",
    "init_store": "zoostore.repository",
    "fetch": "zoostore.ops.fetch",
    "sync": "zoostore.ops.sync",
    "publish": "zoostore.ops.publish",
    "ZooError": "zoostore.core.errors",
}

if TYPE_CHECKING:
    from zoostore.core.errors import ZooError
    from zoostore.ops.publish import publish
    from zoostore.repository import init_store, open_store
    from zoostore.ops.fetch import fetch
    from zoostore.ops.sync import sync


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoostore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
