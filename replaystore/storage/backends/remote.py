"""A store at an fsspec URL (``s3://``, ``gcs://``, ``memory://``...): one object per key.

Metadata and whole chunks are read and written as objects; an object PUT is atomic, so
readers see the old or the new commit.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import (
    CorruptStoreError,
    MissingExtraError,
    RemoteStoreError,
    ReplayStoreError,
    StoreModeError,
)
from ..files import MAX_JSON_BYTES, parse_json
from .base import Backend

__all__ = ["FsspecBackend", "remote_errors", "env_storage_options"]

_REMOTE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "fsspec",
                   "requests", "urllib3", "google", "azure")


@contextlib.contextmanager
def remote_errors(where: Any) -> Iterator[None]:
    """Turn an object-store client's exceptions (botocore, aiohttp...) into
    :class:`RemoteStoreError` naming ``where``; everything else passes through."""
    try:
        yield
    except ReplayStoreError:
        raise
    except Exception as e:
        mod = type(e).__module__ or ""
        if mod.split(".")[0] in _REMOTE_MODULES:
            raise RemoteStoreError(f"{where}: object store request failed: {e}") from e
        raise


def env_storage_options(url: str) -> dict:
    """``REPLAYSTORE_STORAGE_OPTIONS`` (a JSON object) as fsspec storage options: how the
    command line takes options such as ``{"endpoint_url": ..., "anon": true}``."""
    text = os.environ.get("REPLAYSTORE_STORAGE_OPTIONS")
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreModeError(
            f"{url}: REPLAYSTORE_STORAGE_OPTIONS is not valid JSON ({e.msg}): {text!r}"
        ) from None
    if not isinstance(opts, dict):
        raise StoreModeError(
            f"{url}: REPLAYSTORE_STORAGE_OPTIONS must be a JSON object like "
            f'{{"endpoint_url": "http://127.0.0.1:9000"}}, got {text!r}'
        )
    return opts


class FsspecBackend(Backend):
    writable = True

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url.rstrip("/"))
        try:
            import fsspec
        except ImportError:
            raise MissingExtraError(
                f"{url}: URLs need fsspec (and s3fs for s3://): pip install \"replaystore[s3]\""
            ) from None
        self.url = url.rstrip("/")
        if storage_options is None:
            storage_options = env_storage_options(url)
        self.storage_options = dict(storage_options)
        try:
            self.fs, self.root = fsspec.url_to_fs(self.url, **self.storage_options)
        except ImportError as e:
            raise MissingExtraError(
                f"{url}: this URL scheme needs an fsspec backend that is not installed ({e}); "
                "for s3:// pip install \"replaystore[s3]\""
            ) from None
        except ValueError as e:
            raise StoreModeError(f"{url}: cannot open this URL: {e}") from None
        self.root = self.root.rstrip("/")

    def _p(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def get(self, key: str) -> bytes | None:
        # a JSON document is read at most one byte past the limit (a ranged read), so an
        # oversized one is refused without being downloaded whole
        bounded = key.rsplit("/", 1)[-1] in ("zarr.json", ".zarr.json.bak")
        try:
            with remote_errors(self.url):
                if not bounded:
                    return self.fs.cat_file(self._p(key))
                data = self.fs.cat_file(self._p(key), start=0, end=MAX_JSON_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError):
            return None
        if len(data) > MAX_JSON_BYTES:
            raise CorruptStoreError(
                f"{self.url}/{key}: this JSON document is over {MAX_JSON_BYTES:,} bytes; it is not read"
            )
        return data

    def get_json(self, key: str, *, what: str):
        """A JSON document, within the size and depth limits of local stores' documents."""
        data = self.get(key)
        return None if data is None else parse_json(data, where=f"{self.url}/{key}", what=what)

    def put(self, key: str, data: bytes) -> None:
        # one PUT per object: object stores replace objects atomically
        with remote_errors(self.url):
            self.fs.pipe_file(self._p(key), data)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        base = self._p(prefix.rstrip("/"))
        try:
            with remote_errors(self.url):
                found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for p, d in found.items():
            if d.get("type") == "directory":
                continue
            key = p[len(self.root) + 1 :] if p.startswith(self.root + "/") else p
            out[key] = int(d.get("size") or 0)
        return out

    def delete_all(self) -> None:
        with remote_errors(self.url):
            if self.fs.exists(self.root):
                self.fs.rm(self.root, recursive=True)

    def zarr_store(self, *, read_only: bool):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url, storage_options=self.storage_options or None,
                                    read_only=read_only)
