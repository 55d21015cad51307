"""Live progress of a search on the driver: a trials bar with ETA, the baseline's epochs, trial logs.

On a terminal (stderr is a TTY) the trials and the baseline's epochs are tqdm bars and every other
line is written above them (``tqdm.write``); elsewhere (CI logs, ``| tee``) bars would be a stream of
carriage returns, so the same information comes as plain lines with the ETA in them. ``quiet``
silences all of it; ``verbose`` adds one line per trial result (each epoch) on top.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

VERBOSITY_QUIET, VERBOSITY_NORMAL, VERBOSITY_VERBOSE = 0, 1, 2


def interactive(stream: TextIO | None = None) -> bool:
    """Whether bars can redraw in place: a terminal that reports a width (a pseudo-terminal without a
    window, e.g. ``script`` run from a log, reports 0 columns and tqdm would then draw nothing)."""
    stream = stream or sys.stderr
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):  # tty-like without a size: tqdm's default width
        return True


def format_eta(seconds: float | None) -> str:
    """``"ETA 4 min 10 s"``, or ``"ETA --"`` before the first trial of this session finished."""
    if seconds is None:
        return "ETA --"
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"ETA {minutes} min {secs:02d} s" if minutes else f"ETA {secs} s"


class TrialsBar:
    """Finished trials out of the budget; the rate counts only trials finished in this session."""

    def __init__(self, total: int, initial: int, *, verbosity: int, stream: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        self.total, self.initial, self.done = total, initial, initial
        self.verbosity = verbosity
        self.started = time.time()
        self.stream = stream or sys.stderr
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc="trials",
            unit="trial",
            file=self.stream,
            disable=verbosity == VERBOSITY_QUIET or not interactive(self.stream),
            dynamic_ncols=True,
            smoothing=0.0,
        )

    @property
    def drawn(self) -> bool:
        return not self.bar.disable

    def eta_s(self) -> float | None:
        """Seconds left at this session's pace (None before its first finished trial)."""
        new = self.done - self.initial
        if new <= 0:
            return None
        return (time.time() - self.started) / new * max(0, self.total - self.done)

    def update(self, done: int, **postfix: Any) -> None:
        self.done = done
        if self.drawn:
            self.bar.n = done
            self.bar.set_postfix(postfix, refresh=True)

    def write(self, text: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self.verbosity == VERBOSITY_QUIET:
            return
        if self.drawn:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, file=sys.stdout, flush=True)

    def close(self) -> None:
        self.bar.close()


class EpochsBar:
    """The shared baseline's training epochs (a bar on a terminal, a line per epoch elsewhere)."""

    def __init__(self, total: int, desc: str, *, quiet: bool, stream: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        self.total, self.desc, self.quiet = total, desc, quiet
        self.stream = stream or sys.stderr
        self.started = time.time()
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="epoch",
            file=self.stream,
            disable=quiet or not interactive(self.stream),
            dynamic_ncols=True,
            leave=False,
        )

    def epoch(self, epoch: int, loss: float | None) -> None:
        """Epoch ``epoch`` (1-based) finished with mean training ``loss``."""
        if self.quiet:
            return
        if not self.bar.disable:
            self.bar.update(max(0, epoch - self.bar.n))
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        elapsed = time.time() - self.started
        eta = format_eta(elapsed / epoch * (self.total - epoch)) if epoch else format_eta(None)
        loss_text = f", loss {loss:.4f}" if loss is not None else ""
        print(f"{self.desc}: epoch {epoch}/{self.total}{loss_text} ({elapsed:.0f} s, {eta})", flush=True)

    def close(self) -> None:
        self.bar.close()
