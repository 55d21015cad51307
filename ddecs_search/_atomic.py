"""Atomic local writes: a crash or a power cut never leaves half a file under the final name.

The one way the package writes a local file: a temp file in the same folder (so the rename stays on one
file system), written, flushed and fsynced, given the mode a plain ``open`` would give it, renamed onto
the final name, then the folder fsynced so that the rename itself is on disk. On any failure the temp
file is removed and the old file, if any, is left as it was. Text is UTF-8.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ddecs_search import _faults

# mkstemp creates 0600 files; renamed into place they get what ``open`` would give (0666 minus umask)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be fsynced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and platforms) refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, permissions: int | None = None
) -> Iterator[IO[Any]]:
    """``with atomic_open(path, "wb") as fh: ...``: ``path`` appears, complete, only when the block ends.

    ``mode`` is ``"wb"`` or ``"w"`` (UTF-8 text). ``permissions`` (e.g. ``0o644``) overrides the
    umask-derived mode. Parents are created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, (0o666 & ~_UMASK) if permissions is None else permissions)
        _faults.point(f"write:{path.name}")  # crash tests: killed with the new file not yet in place
        os.replace(tmp, path)
        fsync_dir(path.parent)  # ... and the rename itself survives a power cut
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically and durably; returns ``path``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and durably; returns ``path``."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)
