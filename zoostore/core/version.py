"""The version of zoostore (the package's, not of any file format: formats carry their own)."""

__version__ = "0.1.0"
