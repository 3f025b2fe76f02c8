"""The CMake package shipped with zoostore: `zoostore-config.cmake` in this folder.

`zoostore cmake-dir` prints `CMAKE_DIR`; with it on `CMAKE_PREFIX_PATH` (or as `zoostore_DIR`),
`find_package(zoostore CONFIG REQUIRED)` provides `zoostore_sync()` and `zoostore_model_dir()`.
See docs/cmake.md.
"""

from __future__ import annotations

from pathlib import Path

#: The folder holding zoostore-config.cmake.
CMAKE_DIR = Path(__file__).resolve().parent
