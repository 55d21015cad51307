"""Where datasets live, whether we may download them, and the one way a download failure is reported.

Downloads are torchvision's; they are attempted only on a user's machine. ``DDECS_OFFLINE=1`` (set by the
tests and by air-gapped clusters) turns every download attempt into an immediate ``DataError``, so nothing
ever hangs on a network that is not there. Whatever goes wrong inside torchvision (``RuntimeError``,
``URLError``, a half-written archive) reaches the user as a ``DataError`` that says how to get the data.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ddecs_search._atomic import atomic_open
from ddecs_search.errors import DataError

T = TypeVar("T")

DATA_ENV = "DDECS_DATA"
OFFLINE_ENV = "DDECS_OFFLINE"
DEFAULT_ROOT = Path("~/.cache/ddecs_search/data")


def default_root() -> Path:
    """``$DDECS_DATA`` if set, else ``~/.cache/ddecs_search/data`` (not created here)."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_ROOT).expanduser()


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The data root for a ``DataConfig.root`` value (``None`` = :func:`default_root`), absolute."""
    return (Path(root).expanduser() if root else default_root()).absolute()


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """Whether a download may be attempted: explicit argument first, then ``DDECS_OFFLINE``."""
    if allow_download is not None:
        return allow_download
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def fetch_or_fail(download: Callable[[], T], *, allowed: bool, missing: str) -> T:
    """Run torchvision's ``download()`` if allowed; any failure becomes ``DataError(missing + cause)``.

    Args:
        download: the call that downloads (and verifies) the files.
        allowed: result of :func:`downloads_allowed`; when False nothing is attempted.
        missing: the user-facing message saying where the data was looked for and how to get it.

    Raises:
        DataError: downloads are disabled or the download failed. The torchvision/network exception is
            summarised in the message and not chained: its traceback helps nobody who lacks internet.
    """
    if not allowed:
        raise DataError(f"{missing} (downloads are disabled: {OFFLINE_ENV}=1 or allow_download=False)")
    try:
        return download()
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
        cause = " ".join(str(exc).split())[:300]
        raise DataError(f"{missing} (download failed: {type(exc).__name__}: {cause})") from None


def gunzip_atomic(src: Path, dest: Path) -> None:
    """Decompress ``src`` into ``dest`` through :func:`~ddecs_search._atomic.atomic_open`.

    Concurrent trials may stage the same file at once; each writes its own temporary file and the rename
    is atomic, so a reader never sees a half-written file.
    """
    # a shared data root must stay readable by others whatever the umask
    with atomic_open(dest, "wb", permissions=0o644) as out, gzip.open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, length=1 << 20)
