"""Files in the experiment directory, which is a local path or any URI pyarrow (and so Ray) accepts.

Local paths are written by ``_atomic`` (temp file, fsync, rename, fsync of the folder), so a reader
(``status``, the report) never sees half a file; URIs (``s3://``, ``gs://``, ``file://`` ...) go through
``pyarrow.fs``, whose object uploads are atomic per object.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ddecs_search._atomic import write_bytes_atomic


def is_uri(location: str) -> bool:
    """Whether ``location`` is a URI (``scheme://...``) rather than a local path."""
    return "://" in str(location)


def normalise(location: str | os.PathLike[str]) -> str:
    """Absolute local path, or the URI unchanged (without a trailing slash)."""
    text = str(location)
    return text.rstrip("/") if is_uri(text) else str(Path(text).expanduser().resolve())


def join(location: str, *parts: str) -> str:
    """``location/part/...`` for paths and URIs alike."""
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def _fs(location: str):  # -> tuple[pyarrow.fs.FileSystem, str]
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location)


def write_bytes(location: str, data: bytes) -> None:
    """Write ``data`` to ``location`` atomically (parents created)."""
    if is_uri(location):
        fs, path = _fs(location)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    write_bytes_atomic(data, location)


def write_text(location: str, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    write_bytes(location, text.encode())


def read_bytes(location: str) -> bytes:
    """Read a whole file; FileNotFoundError when it does not exist."""
    if is_uri(location):
        fs, path = _fs(location)
        if not _exists(fs, path):
            raise FileNotFoundError(location)
        with fs.open_input_stream(path) as src:
            return src.read()
    return Path(location).read_bytes()


def read_text(location: str) -> str:
    return read_bytes(location).decode()


def remove(location: str) -> None:
    """Delete a file; nothing when it does not exist."""
    if is_uri(location):
        fs, path = _fs(location)
        if _exists(fs, path):
            fs.delete_file(path)
        return
    Path(location).unlink(missing_ok=True)


def exists(location: str) -> bool:
    if is_uri(location):
        fs, path = _fs(location)
        return _exists(fs, path)
    return os.path.exists(location)


def _exists(fs, path: str) -> bool:
    import pyarrow.fs

    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def list_names(location: str) -> list[str]:
    """Names of the entries of a folder (empty when it does not exist)."""
    if is_uri(location):
        import pyarrow.fs

        fs, path = _fs(location)
        if not _exists(fs, path):
            return []
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=False))
        return sorted(info.base_name for info in infos)
    return sorted(os.listdir(location)) if os.path.isdir(location) else []


def upload_dir(local_dir: str | Path, location: str) -> None:
    """Copy the files of ``local_dir`` (recursively) into ``location``, replacing existing ones."""
    if is_uri(location):
        import pyarrow.fs

        fs, path = _fs(location)
        fs.create_dir(path, recursive=True)
        pyarrow.fs.copy_files(str(local_dir), path, destination_filesystem=fs)
        return
    shutil.copytree(local_dir, location, dirs_exist_ok=True)


def download_dir(location: str, local_dir: str | Path) -> None:
    """Copy a folder of the experiment into a local folder."""
    if is_uri(location):
        import pyarrow.fs

        fs, path = _fs(location)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(path, str(local_dir), source_filesystem=fs)
        return
    shutil.copytree(location, local_dir, dirs_exist_ok=True)
