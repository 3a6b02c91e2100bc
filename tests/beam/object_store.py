"""A Beam file system with an object store's rules, on a local folder: ``kitstore://``.

Like GCS or S3 it has no directories (a "folder" is a prefix of object names, listed
recursively), and an object appears only when its writer closes, whole. Beam finds it
by its scheme once this module is imported (``FileSystem`` subclasses register
themselves); ``ROOT`` is where its objects live (a test sets it).
"""

from __future__ import annotations

import io
import os
import shutil
import uuid

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

SCHEME = "kitstore"
ROOT = ""  # set by the test that uses it: the local folder that holds the objects


class _Upload(io.FileIO):
    """A writer whose object appears under its name when closed (as an upload)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.staged = os.path.join(ROOT, f".upload-{uuid.uuid4().hex}")
        super().__init__(self.staged, "wb")

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.makedirs(os.path.dirname(self.target), exist_ok=True)
            os.replace(self.staged, self.target)


class ObjectStore(FileSystem):
    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    @staticmethod
    def local(path: str) -> str:
        assert path.startswith(f"{SCHEME}://"), path
        return os.path.join(ROOT, path[len(SCHEME) + 3:])

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def has_dirs(self):
        return False

    def mkdirs(self, path):
        pass

    def _list(self, dir_or_prefix):
        prefix = self.local(dir_or_prefix)
        for root, _, names in os.walk(ROOT):
            for name in names:
                full = os.path.join(root, name)
                if full.startswith(prefix) and not name.startswith(".upload-"):
                    path = f"{SCHEME}://{os.path.relpath(full, ROOT)}"
                    yield self.metadata(path)

    def create(self, path, mime_type="application/octet-stream", compression_type="auto"):
        return _Upload(self.local(path))

    def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
        return open(self.local(path), "rb")

    def copy(self, source_file_names, destination_file_names):
        for source, target in zip(source_file_names, destination_file_names, strict=True):
            os.makedirs(os.path.dirname(self.local(target)), exist_ok=True)
            shutil.copyfile(self.local(source), self.local(target))

    def rename(self, source_file_names, destination_file_names):
        for source, target in zip(source_file_names, destination_file_names, strict=True):
            os.makedirs(os.path.dirname(self.local(target)), exist_ok=True)
            os.replace(self.local(source), self.local(target))

    def exists(self, path):
        return os.path.isfile(self.local(path))

    def size(self, path):
        return os.path.getsize(self.local(path))

    def last_updated(self, path):
        return os.path.getmtime(self.local(path))

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        missing = {p: FileNotFoundError(p) for p in paths if not self.exists(p)}
        for path in paths:
            if path not in missing:
                os.remove(self.local(path))
        if missing:
            raise BeamIOError("Delete operation failed", missing)
