"""The one atomic writer (`ddecs_search._atomic`) and the one JSON sanitiser (`ddecs_search.strict_json`)."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from ddecs_search import _atomic, storage
from ddecs_search._atomic import atomic_open, write_bytes_atomic, write_text_atomic
from ddecs_search.policies import ExitTable
from ddecs_search.training import load_checkpoint, save_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_text_and_bytes_round_trip_with_parents_created(tmp_path: Path) -> None:
    text = tmp_path / "a" / "b" / "note.json"
    assert write_text_atomic("grüße {}\n", text) == text
    assert text.read_text(encoding="utf-8") == "grüße {}\n"
    blob = tmp_path / "c" / "blob.bin"
    write_bytes_atomic(b"\x00\x01\xff", blob)
    assert blob.read_bytes() == b"\x00\x01\xff"
    write_bytes_atomic(b"second", blob)  # replaces
    assert blob.read_bytes() == b"second"
    assert _leftovers(blob.parent) == [] and _leftovers(text.parent) == []


def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "trials.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(target, "w") as fh:
            fh.write("half a ne")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "a"):
            pass


def test_file_and_folder_are_fsynced_before_and_after_the_rename(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    monkeypatch.setattr(_atomic.os, "replace", replace)
    write_text_atomic("x", tmp_path / "f.txt")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_mode_is_what_open_would_give_not_mkstemps_0600(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    plain = tmp_path / "plain"
    plain.write_text("")
    atomic = write_text_atomic("", tmp_path / "atomic")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
    with atomic_open(tmp_path / "shared", "wb", permissions=0o640) as fh:
        fh.write(b"")
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640


def test_the_package_writers_go_through_it(tmp_path: Path, monkeypatch) -> None:
    """storage, checkpoints, exit tables and policies all write through ``atomic_open``."""
    opened: list[str] = []
    real = _atomic.atomic_open

    def spy(path, mode="wb", **kw):
        opened.append(Path(path).name)
        return real(path, mode, **kw)

    monkeypatch.setattr(_atomic, "atomic_open", spy)
    for module in ("ddecs_search.training._checkpoint", "ddecs_search.policies._table"):
        monkeypatch.setattr(f"{module}.atomic_open", spy)
    storage.write_text(str(tmp_path / "run.json"), "{}")
    save_atomic({"w": torch.ones(2)}, tmp_path / "model.pt")
    table = ExitTable(np.zeros((3, 2, 4), np.float32), np.zeros((3, 2), np.int64), np.zeros(3, np.int64))
    table.save(tmp_path / "val.npz")
    assert opened == ["run.json", "model.pt", "val.npz"]
    assert torch.equal(load_checkpoint(tmp_path / "model.pt")["w"], torch.ones(2))
    np.testing.assert_array_equal(ExitTable.load(tmp_path / "val.npz").features, table.features)
    assert json.loads((tmp_path / "run.json").read_text()) == {}
    assert _leftovers(tmp_path) == []


def test_json_safe_makes_strict_json() -> None:
    from ddecs_search.strict_json import dumps, json_safe

    value = {
        "a": np.float32(1.5),
        "b": [np.int64(3), float("nan"), math.inf, -math.inf],
        "c": (np.bool_(True), None, "s"),
        "d": np.array([[1, 2], [3, 4]]),
        "e": np.array([0.5, np.nan]),
        "f": torch.tensor(2.0),
        "g": {"nested": np.float64("inf")},
    }
    safe = json_safe(value)
    assert safe == {
        "a": 1.5,
        "b": [3, None, None, None],
        "c": [True, None, "s"],
        "d": [[1, 2], [3, 4]],
        "e": [0.5, None],
        "f": 2.0,
        "g": {"nested": None},
    }
    assert type(safe["b"][0]) is int and type(safe["c"][0]) is bool
    assert json.loads(dumps(value)) == safe
    with pytest.raises(TypeError):
        dumps({"x": object()})
