"""`zoostore cmake-dir`: print the folder holding zoostore-config.cmake (for CMAKE_PREFIX_PATH)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cmake-dir", help="print the folder of zoostore's CMake package (for find_package(zoostore))",
        description="Print the folder holding zoostore-config.cmake. Configure with "
        "-DCMAKE_PREFIX_PATH=\"$(zoostore cmake-dir)\" (or -Dzoostore_DIR=...) and use "
        "find_package(zoostore CONFIG REQUIRED); see docs/cmake.md.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoostore.integrations.cmake import CMAKE_DIR

    print(CMAKE_DIR)
    return 0
