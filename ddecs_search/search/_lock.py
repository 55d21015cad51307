"""One driver per experiment: ``run`` and ``resume`` hold ``EXP/driver.lock`` while they drive a search.

Two drivers on one experiment would rerun the same trials and overwrite the same files, so the second
one exits 2 naming the holder (host, pid, since). How the lock is held depends on the storage:

- **A folder** (local disk or a shared file system): an exclusive ``flock`` on ``driver.lock``, held by
  the open file for the driver's life. The kernel drops it when the process ends in any way (SIGKILL and
  power loss included), so a stale lock (the pid is dead) is taken over by the next driver with nothing
  to clean up. On NFS the client maps ``flock`` to NFS locks, which the server releases when the client's
  lease expires. The file's text (host, pid, since) only names the holder.
- **Object storage** (``s3://``, ``gs://`` ...), which has no locks: a heartbeat lease. The holder
  rewrites ``driver.lock`` every ``HEARTBEAT_S`` seconds; a lock whose heartbeat is older than
  ``LEASE_S`` is stale and taken over. A newcomer writes its claim, waits, and reads it back, so of two
  newcomers at the same time at most one keeps the lock (the other exits 2).

``--force`` takes the lock whatever its state: for a holder known to be gone whose lock cannot expire by
itself (a host that died holding an NFS lock before its lease ran out). A live holder keeps running, so
use it only when sure.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from ddecs_search import storage as _io
from ddecs_search.errors import UserError

LOCK_NAME = "driver.lock"
HEARTBEAT_S = 10.0
LEASE_S = 60.0  # object storage: a heartbeat older than this means the holder is gone
CLAIM_SETTLE_S = 2.0  # object storage: wait before reading a fresh claim back
PROBE_RETRIES = 5  # folders: tries 0.1 s apart before a held flock counts as another driver's


class ExperimentLocked(UserError):
    """Another driver holds the experiment (exit code 2); the message names it and what to do."""


def describe_holder(holder: dict[str, Any]) -> str:
    """``host H, pid P, since T`` of a lock's holder."""
    since = holder.get("since")
    when = "?"
    if isinstance(since, (int, float)):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {when}"


def _locked_message(exp_root: str, holder: dict[str, Any], how: str) -> str:
    return (
        f"{exp_root} is being driven by another ddecs-search ({describe_holder(holder)}; {how}). "
        "Wait for it to finish, or stop it (Ctrl-C) and resume. If that process is gone and the lock does "
        f"not clear by itself, take it over with `ddecs-search resume {exp_root} --force`."
    )


class DriverLock:
    """Context manager holding the experiment's driver lock (see the module docstring)."""

    def __init__(self, exp_root: str, *, force: bool = False, command: str = "") -> None:
        self.exp_root = exp_root
        self.location = _io.join(exp_root, LOCK_NAME)
        self.force = force
        self.token = uuid.uuid4().hex
        self.info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.time(),
            "token": self.token,
            "command": command,
        }
        self.took_over: dict[str, Any] | None = None  # the stale holder replaced, if any
        self._fh: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- public
    def acquire(self) -> DriverLock:
        if self._fh is not None or self._thread is not None:  # held already (``with lock.acquire():``)
            return self
        if _io.is_uri(self.exp_root):
            self._acquire_lease()
        else:
            self._acquire_flock()
        return self

    def release(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            try:
                if _read(self.location).get("token") == self.token:
                    _delete(self.location)
            except Exception:  # (best effort: an expired lease clears by itself)
                pass
        if self._fh is not None:
            import fcntl

            try:
                self._fh.seek(0)
                self._fh.truncate()  # released cleanly: the next driver finds no holder to take over from
                self._fh.flush()
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------------------------ local / NFS
    def _acquire_flock(self) -> None:
        import fcntl

        os.makedirs(self.exp_root, exist_ok=True)
        fh = open(self.location, "a+")  # (held open for the driver's life)
        try:
            for attempt in range(PROBE_RETRIES):  # `status` probes with a shared lock for an instant
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == PROBE_RETRIES - 1:
                        raise
                    time.sleep(0.1)
        except BlockingIOError:
            holder = _parse(_read_local(self.location))
            if not self.force:
                fh.close()
                raise ExperimentLocked(_locked_message(self.exp_root, holder, "its lock is held")) from None
            self.took_over = holder  # --force: proceed; the other process, if alive, is not stopped
        else:
            previous = _parse(_read_local(self.location))
            if previous:
                self.took_over = previous  # a stale lock: its process ended without releasing it
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(self.info) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        self._fh = fh

    # -------------------------------------------------------------------------------- object storage
    def _acquire_lease(self) -> None:
        current = _read(self.location)
        if current and not self.force and time.time() - float(current.get("heartbeat_at", 0)) < LEASE_S:
            raise ExperimentLocked(_locked_message(self.exp_root, current, "its heartbeat is recent"))
        if current:
            self.took_over = current
        self._write_lease()
        time.sleep(CLAIM_SETTLE_S)
        back = _read(self.location)
        if back.get("token") != self.token:  # another newcomer wrote after us: it keeps the lock
            how = "it claimed the lock at the same time"
            raise ExperimentLocked(_locked_message(self.exp_root, back, how))
        self._thread = threading.Thread(target=self._heartbeat, name="ddecs-driver-lock", daemon=True)
        self._thread.start()

    def _write_lease(self) -> None:
        _io.write_text(self.location, json.dumps({**self.info, "heartbeat_at": time.time()}))

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write_lease()
            except Exception:  # (a missed beat is retried; LEASE_S allows several)
                pass


def _read_local(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"host": "?", "pid": "?", "note": "unreadable lock file"}
    return data if isinstance(data, dict) else {}


def _read(location: str) -> dict[str, Any]:
    try:
        return _parse(_io.read_text(location)) if _io.exists(location) else {}
    except (OSError, UnicodeDecodeError):
        return {}


def _delete(location: str) -> None:
    if _io.is_uri(location):
        fs, path = _io._fs(location)
        fs.delete_file(path)
    else:
        os.unlink(location)


def last_holder(exp_root: str) -> dict[str, Any] | None:
    """The holder a lock file names, alive or not (a released lock names none): for ``status``."""
    location = _io.join(exp_root, LOCK_NAME)
    holder = _read(location) if _io.is_uri(exp_root) else _parse(_read_local(location))
    return holder or None


def lock_holder(exp_root: str) -> dict[str, Any] | None:
    """Who holds the experiment now (for ``status``), or None: a local lock is probed without taking it."""
    location = _io.join(exp_root, LOCK_NAME)
    if _io.is_uri(exp_root):
        current = _read(location)
        fresh = current and time.time() - float(current.get("heartbeat_at", 0)) < LEASE_S
        return current if fresh else None
    if not os.path.exists(location):
        return None
    import fcntl

    with open(location) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(_read_local(location)) or {"host": "?", "pid": "?"}
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
