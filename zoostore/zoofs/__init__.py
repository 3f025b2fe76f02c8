"""`zoo://`: a read-only fsspec filesystem over a zoo store.

    zoo://                              the models                          (directories)
    zoo://MODEL                         its versions, as MODEL@1.2.0        (directories)
    zoo://MODEL@SPEC                    the archs of the version SPEC picks (directories)
    zoo://MODEL@SPEC/ARCH               the files ARCH gets: `any` files plus ARCH's own
    zoo://MODEL@SPEC/ARCH/sub/dir/f     one file (directories are implied by file paths)
    zoo://MODEL/ARCH/...                MODEL alone means MODEL@latest

SPEC is what `zoostore.documents.resolve` takes: an exact version (`1.2.0`), a node-semver range
(`^1.2`, `1.x`, `>=1.2 <2`), a tag (`bleedingedge`) or `latest`. Listings keep the spec as
written, so `find("m@^1.2/x86_64")` names `m@^1.2/x86_64/...`; `info` says which version it
picked. With an ARCH, the spec picks the newest matching version that has files for ARCH.

The store comes from `zoostore.documents.project.find_store_url`, the one rule every entry
point shares: the `store=` storage option, else `$ZOOSTORE_STORE`, else the nearest `zoo.toml`
(`store = "..."`) or `pyproject.toml` (`[tool.zoostore] store = "..."`) found by walking up
from the working directory. It is resolved when the filesystem is created, so
fsspec's instance cache keys on the actual store URL and a pickled instance reads the same
store on another machine.

Reads: a file opened with `open()` fetches only the chunks covering what is read (each chunk
verified against its id), keeps the last few decoded chunks, and reads ahead (doubling) only
while access is sequential, so a 4 KiB read at a random offset costs about one chunk. Whole-file
reads (`cat_file` without a range, `get_file`, `read()` of a whole file from offset 0) go
through the local cache (`zoostore.storage.cache.Cache`): the file is fetched once, verified against its
blob id, and later reads of any part of it are local.

Writes of any kind raise `ReadOnlyError` (a `PermissionError`): files enter a zoo through
`zoostore publish`, which checks, deduplicates and versions them.

Modules: `filesystem` (ZooFileSystem: store, manifests, listings, reads), `file` (ZooFile: an
open file's chunk cache and read-ahead), `reading` (verified local and streamed reads),
`paths` (the path grammar), `readonly` (every write refused), `instances` (fsspec's instance
cache, forked children, pickling). fsspec finds the protocol through
the `zoo = "zoostore.zoofs:ZooFileSystem"` entry point.
"""

from __future__ import annotations

from zoostore.documents.project import STORE_ENV, find_store_url
from zoostore.zoofs.file import ZooFile
from zoostore.zoofs.filesystem import ZooFileSystem
from zoostore.zoofs.paths import ZooPath

__all__ = ["STORE_ENV", "ZooFile", "ZooFileSystem", "ZooPath", "find_store_url"]
