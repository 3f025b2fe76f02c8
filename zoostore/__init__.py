"""zoostore: a content-addressed artifact store for model zoos.

    import zoostore
    zoo = zoostore.open_store("s3://bucket/zoo")      # or a local path
    zoo.models(); zoo.manifest("yolo"); zoo.resolve("yolo", "^1.2", arch="x86_64")
    path = zoostore.fetch("yolo", "^1.2", "deploy_lib.so", arch="x86_64", store=...)
    folder = zoostore.fetch_version("yolo", "^1.2", arch="x86_64", store=...)   # every file
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
    "fetch_version": "zoostore.ops.fetch",
    "sync": "zoostore.ops.sync",
    "ZooError": "zoostore.core.errors",
}

if TYPE_CHECKING:
    from zoostore.core.errors import ZooError
    import os
    from collections.abc import Sequence
    from pathlib import Path

    from zoostore.core.progress import Progress
    from zoostore.ops.publish import Checker, PublishResult
    from zoostore.repository import Store
    from zoostore.repository import init_store, open_store
    from zoostore.ops.fetch import fetch, fetch_version
    from zoostore.ops.sync import sync


def publish(
    store: Store,
    model: str,
    version: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    check: bool | Checker = True,
    progress: Progress | None = None,
    **options: Any,
) -> PublishResult:
    """Publish files as `model@version` (`zoostore.ops.publish.plan_publish` names the options:
    arch, tags, meta, requires, summary, new_arch; then the plan is executed).
    `.onnx` files pass the ONNX check first (`zoostore check`) unless `check=False`; a callable
    replaces that check. The check lives here, at the edge, because the operations layer never
    imports an integration; onnx itself is imported only when there is an `.onnx` file."""
    from zoostore.ops.publish import plan_publish

    checker: Checker | None = None
    if check is True:
        from zoostore.integrations.onnx_meta import publish_checker

        checker = publish_checker(progress)
    elif check is not False:
        checker = check
    plan = plan_publish(store, model, version, paths, check=checker, progress=progress, **options)
    return plan.execute(progress)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoostore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted([*_LAZY, "publish"])
