"""zoostore: a content-addressed artifact store for model zoos."""

from __future__ import annotations

__version__ = "0.1.0"
