"""``AtomicFileDataset``: the common base of the project's versioned single-file datasets.

It resolves the (optionally fsspec-prefixed) file path and its filesystem, and writes every save
to a temporary file beside the target that is then renamed into place, so an interrupted save
never leaves a partial file under the real name. Subclasses turn data into bytes and back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from copy import deepcopy
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

_DI = TypeVar("_DI")
_DO = TypeVar("_DO")


class AtomicFileDataset(AbstractVersionedDataset[_DI, _DO]):
    """A versioned dataset of one file on any fsspec filesystem, saved atomically.

    Arguments: ``filepath`` (optionally with an fsspec protocol prefix); ``version`` (kedro's,
    ``versioned: true`` in the catalog); ``credentials`` and ``fs_args`` for the fsspec filesystem;
    ``metadata``, ignored by kedro and free for users.
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        filepath: str | os.PathLike,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(str(filepath), version)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _load_path(self) -> str:
        """The path of the version to load, as the filesystem names it."""
        return get_filepath_str(self._get_load_path(), self._protocol)

    def _save_atomically(self, write: Callable[[IO[bytes]], None]) -> None:
        """Call `write` on a temporary file beside the target, then rename it to the save path.

        The temporary file shares the target's folder, so the rename stays on one filesystem
        (atomic locally); on any failure it is removed and nothing appears under the real name.
        """
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        temp_path = f"{save_path}.{uuid.uuid4().hex}.tmp"
        try:
            with self._fs.open(temp_path, mode="wb") as handle:
                write(handle)
            self._fs.mv(temp_path, save_path)
        finally:
            if self._fs.exists(temp_path):
                self._fs.rm(temp_path)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            load_path = self._load_path()
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
