"""Every fsspec write primitive of `zoo://`, refused: files enter a zoo only by publishing."""

from __future__ import annotations

from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from zoostore.zoofs.paths import read_only_error


class ReadOnlyMixin:
    """Overrides fsspec's write methods with ReadOnlyError (a PermissionError) that names the
    command that does write. Comes before AbstractFileSystem in the bases."""

    @property
    def store_url(self) -> str:
        raise NotImplementedError

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise read_only_error("create directory", path, self.store_url)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        raise read_only_error("create directories", path, self.store_url)

    def rmdir(self, path: str) -> None:
        raise read_only_error("remove directory", path, self.store_url)

    def rm_file(self, path: str) -> None:
        raise read_only_error("delete", path, self.store_url)

    def _rm(self, path: str) -> None:
        raise read_only_error("delete", path, self.store_url)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        raise read_only_error("delete", path, self.store_url)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        raise read_only_error("touch", path, self.store_url)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        raise read_only_error("write", path, self.store_url)

    def pipe(self, path: Any, value: Any = None, **kwargs: Any) -> None:
        raise read_only_error("write", path, self.store_url)

    def put_file(self, lpath: Any, rpath: str, callback: Callback = DEFAULT_CALLBACK,
                 mode: str = "overwrite", **kwargs: Any) -> None:
        raise read_only_error("upload to", rpath, self.store_url)

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, callback: Callback = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        raise read_only_error("upload to", rpath, self.store_url)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        raise read_only_error("copy to", path2, self.store_url)

    def copy(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
             on_error: str | None = None, **kwargs: Any) -> None:
        raise read_only_error("copy to", path2, self.store_url)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        raise read_only_error("move", path1, self.store_url)
