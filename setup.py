"""Build of the optional C byte-plane helper (zoostore/storage/_planes.c); everything else is in
pyproject.toml. `optional=True`: where no C compiler is available the install still succeeds
and zoostore.storage.planes uses its pure-Python slices, which produce the same bytes
(docs/design-decisions.md, "byte planes in C")."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("zoostore.storage._planes", ["zoostore/storage/_planes.c"], optional=True)])
